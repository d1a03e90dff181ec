"""A trust model with one meaning: the expected accuracy (or exact match) of an adapter on the described task.

The model regresses the measured accuracy on a few label-free signals of an evaluation case (description
similarity, predictive entropy, disagreement, ...) with ridge regression, clipped to [0, 1], and gives an interval
from the cross-validated residuals (split-conformal quantiles of the signed residuals, so the interval may reach
further down than up: an adapter either works or sits near chance). The accuracy itself is the regression target,
not its logit: outcomes are bimodal, and sigmoid(mean logit) overstates the mean of such outcomes (on the shipped
CVAE's calibration cases it predicted 0.862 on average against 0.831 measured, and its interval could never reach a
measured 1.0).

Any feature may be missing for a case: the model keeps its training rows and, for each *set* of features present at
prediction time, fits a ridge model on exactly those features over the training rows that have them all (a
per-feature-set model, fitted lazily and cached; ridge in closed form on a few hundred rows costs microseconds). No
imputation, so a missing signal never pretends to be a typical one.

Everything is numpy and JSON (never pickle). `TrustModel.cross_validated` gives the honest, task-grouped
out-of-fold predictions that reports must use.

Usage::

    model = TrustModel.fit(rows, measured, groups, target="accuracy")
    est = model.predict({"bank_similarity": 0.62, "entropy_probe": 0.4, "chance": 0.5})
    est.expected, est.low, est.high
    model.save("runs/cvae/trust.json"); TrustModel.load("runs/cvae/trust.json")
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KIND = "loragen-trust"
VERSION = 1
MIN_GROUPS = 4  # a feature set needs training rows from at least this many tasks


class TooFewTasksError(ValueError):
    """The calibration cases come from fewer than `MIN_GROUPS` tasks: no trust model can be fitted on them."""


Row = Mapping[str, float | None]


def _unit(x: float) -> float:
    return min(1.0, max(0.0, x))


def shrunk_accuracy(correct: int, n: int, num_labels: int, strength: float = 4.0,
                    chance: float | None = None) -> float:
    """Beta-binomial posterior mean of an accuracy (or exact match) measured on `n` examples.

    The prior has mean halfway between chance (1/K; `chance` when given: 0 for exact match) and 1 and weighs
    `strength` pseudo-examples, so 8/8 correct reads 0.94 (K=2, strength 4), not 1.0, and 0/0 reads the prior.
    """
    prior = (1.0 + (1.0 / max(2, num_labels) if chance is None else chance)) / 2
    return (correct + strength * prior) / (n + strength)


@dataclass(frozen=True)
class TrustEstimate:
    """The expected accuracy of one adapter with its interval.

    Attributes:
        expected: expected accuracy (exact match for generation) in [0, 1].
        low / high: the interval holding the measured value with probability `coverage` on the calibration split.
        features: the features the estimate used. dropped: features given but left out (too few training rows had
            them together with the others).
    """

    expected: float
    low: float
    high: float
    coverage: float
    features: tuple[str, ...]
    dropped: tuple[str, ...] = ()


@dataclass
class _Ridge:
    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: float
    below: float  # conformal quantiles of the signed residual: the interval is [fit + below, fit + above]
    above: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.weight + self.bias


def _fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean = x.mean(0) if len(x) else np.zeros(x.shape[1])
    std = x.std(0) if len(x) else np.ones(x.shape[1])
    std = np.where(std < 1e-8, 1.0, std)
    z = (x - mean) / std
    bias = float(y.mean())
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - bias)) if z.shape[1] else np.zeros(0)
    return mean, std, w, bias


def _folds(groups: Sequence[str], n_folds: int) -> list[np.ndarray]:
    """Task-grouped folds: every row of a group falls in the same fold (groups assigned round-robin, sorted)."""
    names = sorted(set(groups))
    fold_of = {g: i % n_folds for i, g in enumerate(names)}
    idx = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(idx == k) for k in range(n_folds)]


def _conformal(residuals: np.ndarray, coverage: float) -> tuple[float, float]:
    """Split-conformal quantiles of signed residuals for a two-sided interval of `coverage`: the
    floor((n+1)·(1-coverage)/2)-th and ceil((n+1)·(1+coverage)/2)-th smallest (infinite when n is too small)."""
    r = np.sort(np.asarray(residuals, dtype=float))
    lo = math.floor((len(r) + 1) * (1 - coverage) / 2)
    hi = math.ceil((len(r) + 1) * (1 + coverage) / 2)
    return (float(r[lo - 1]) if lo >= 1 else -math.inf), (float(r[hi - 1]) if hi <= len(r) else math.inf)


@dataclass
class TrustModel:
    """Per-feature-set ridge regression of the accuracy, with conformal intervals; see the module docstring.

    Attributes:
        features: every feature name a row may carry, in a fixed order.
        rows: (n, f) training features, NaN where missing. targets: (n,) measured accuracies. groups: (n,) task
            names (the unit of cross-validation). target: "accuracy" or "exact_match".
        alpha: ridge penalty on standardised features. coverage: the interval's nominal coverage.
        meta: free JSON metadata (method, base model, splits, metrics).
        reference_embeddings: (m, d) L2-normalised embeddings of the generator's training wordings (stored fp16).
    """

    features: tuple[str, ...]
    rows: np.ndarray
    targets: np.ndarray
    groups: list[str]
    target: str = "accuracy"
    alpha: float = 1.0
    coverage: float = 0.8
    meta: dict = field(default_factory=dict)
    reference_embeddings: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, rows: Sequence[Row], measured: Sequence[float], groups: Sequence[str], *, target: str = "accuracy",
            alpha: float = 1.0, coverage: float = 0.8, features: Sequence[str] | None = None,
            meta: dict | None = None, reference_embeddings: np.ndarray | None = None) -> TrustModel:
        """Keep the calibration cases (the fit itself happens per feature set at prediction time).

        Args:
            rows: one dict of feature -> value (None: missing) per evaluation case.
            measured: the adapter's measured accuracy on the task's test data, per case.
            groups: the case's task (cases of one task are never split across folds).
            features: the feature names to use (default: every name seen in `rows`, sorted).

        Raises:
            ValueError: mismatched lengths, accuracies outside [0, 1], bad coverage; TooFewTasksError (a
                ValueError): fewer than `MIN_GROUPS` tasks.
        """
        if not len(rows) == len(measured) == len(groups):
            raise ValueError(f"rows ({len(rows)}), measured ({len(measured)}) and groups ({len(groups)}) differ")
        y = np.asarray(measured, dtype=float)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"measured accuracies must lie in [0, 1], got [{y.min()}, {y.max()}]")
        if len(set(groups)) < MIN_GROUPS:
            raise TooFewTasksError(f"a trust model needs cases from at least {MIN_GROUPS} tasks, got "
                                   f"{len(set(groups))}")
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
        names = tuple(features or sorted({k for r in rows for k in r}))
        x = np.array([[np.nan if r.get(f) is None else float(r[f]) for f in names] for r in rows], dtype=float)
        return cls(names, x.reshape(len(rows), len(names)), y, [str(g) for g in groups], target, alpha, coverage,
                   dict(meta or {}), reference_embeddings)

    # ---- prediction ---------------------------------------------------------------------------------
    def _usable(self, present: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The largest subset of `present` (dropping the sparsest first) with rows from >= MIN_GROUPS tasks."""
        keep = list(present)
        while True:
            cols = [self.features.index(f) for f in keep]
            ok = ~np.isnan(self.rows[:, cols]).any(1) if cols else np.ones(len(self.rows), bool)
            if len({g for g, o in zip(self.groups, ok) if o}) >= MIN_GROUPS or not keep:
                return tuple(keep), tuple(f for f in present if f not in keep)
            counts = [(~np.isnan(self.rows[:, self.features.index(f)])).sum() for f in keep]
            keep.pop(int(np.argmin(counts)))

    def _model(self, used: tuple[str, ...]) -> _Ridge:
        if used not in self._cache:
            cols = [self.features.index(f) for f in used]
            ok = ~np.isnan(self.rows[:, cols]).any(1) if cols else np.ones(len(self.rows), bool)
            x, y = self.rows[ok][:, cols], self.targets[ok]
            groups = [g for g, o in zip(self.groups, ok) if o]
            residuals = []
            for held in _folds(groups, min(5, len(set(groups)))):
                train = np.setdiff1d(np.arange(len(y)), held)
                mean, std, w, b = _fit_ridge(x[train], y[train], self.alpha)
                residuals.append(y[held] - (((x[held] - mean) / std) @ w + b))
            mean, std, w, b = _fit_ridge(x, y, self.alpha)
            self._cache[used] = _Ridge(used, mean, std, w, b, *_conformal(np.concatenate(residuals), self.coverage))
        return self._cache[used]

    def predict(self, row: Row) -> TrustEstimate:
        """The expected accuracy and interval for one case's features (unknown names are ignored)."""
        present = tuple(f for f in self.features if row.get(f) is not None and math.isfinite(float(row[f])))
        used, dropped = self._usable(present)
        ridge = self._model(used)
        fit = float(ridge(np.array([float(row[f]) for f in used], dtype=float)))
        expected = _unit(fit)
        low, high = min(expected, _unit(fit + ridge.below)), max(expected, _unit(fit + ridge.above))
        return TrustEstimate(expected, low, high, self.coverage, used, dropped)

    def cross_validated(self, n_folds: int = 5) -> list[TrustEstimate]:
        """Out-of-fold estimates for every training case (task-grouped folds): the honest numbers to report."""
        out: list[TrustEstimate | None] = [None] * len(self.targets)
        for held in _folds(self.groups, min(n_folds, len(set(self.groups)))):
            sub = self._subset(np.setdiff1d(np.arange(len(self.targets)), held))
            for i in held:
                out[i] = sub.predict(self.row(i))
        return out  # type: ignore[return-value]

    def without_tasks(self, tasks: Collection[str]) -> TrustModel:
        """This model refitted on the calibration rows of every other task: the honest model for a case of one of
        `tasks` (a prediction from `self` would be in-sample). Fewer than `MIN_GROUPS` tasks left fall back to the
        mean accuracy of those left (see `_usable`); no rows left at all is an error.

        Raises:
            ValueError: every calibration row belongs to `tasks`.
        """
        drop = set(tasks)
        keep = np.array([i for i, g in enumerate(self.groups) if g not in drop], dtype=int)
        if not len(keep):
            raise ValueError(f"the trust model holds no calibration row outside tasks {sorted(drop)}; fit it on more "
                             "tasks (`loragen trust fit`)")
        return self._subset(keep)

    def _subset(self, rows: np.ndarray) -> TrustModel:
        """A model on training rows `rows` only (same features, target, penalty and coverage; no metadata)."""
        return TrustModel(self.features, self.rows[rows], self.targets[rows], [self.groups[i] for i in rows],
                          self.target, self.alpha, self.coverage)

    def row(self, i: int) -> dict[str, float | None]:
        """Training case `i` as a feature dict."""
        return {f: None if np.isnan(v) else float(v) for f, v in zip(self.features, self.rows[i])}

    def reference_similarity(self, embedding: np.ndarray) -> float | None:
        """Largest cosine between an L2-normalised embedding and the stored training wordings (None: none stored)."""
        if self.reference_embeddings is None or not len(self.reference_embeddings):
            return None
        return float((self.reference_embeddings.astype(np.float32) @ np.asarray(embedding, np.float32)).max())

    # ---- (de)serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        ref = None
        if self.reference_embeddings is not None:
            arr = np.ascontiguousarray(self.reference_embeddings, dtype="<f2")
            ref = {"shape": list(arr.shape), "dtype": "float16", "base64": base64.b64encode(arr.tobytes()).decode()}
        return {"kind": KIND, "version": VERSION, "target": self.target, "alpha": self.alpha,
                "coverage": self.coverage, "features": list(self.features),
                "rows": [[None if np.isnan(v) else float(v) for v in r] for r in self.rows],
                "targets": self.targets.tolist(), "groups": self.groups, "meta": self.meta,
                "reference_embeddings": ref}

    @classmethod
    def from_dict(cls, data: dict) -> TrustModel:
        """Raises ValueError: not a loragen trust file, or a newer version."""
        if data.get("kind") != KIND:
            raise ValueError(f"not a loragen trust file (kind {data.get('kind')!r}); fit one with `loragen trust fit`")
        if int(data.get("version", 0)) > VERSION:
            raise ValueError(f"trust file version {data['version']} is newer than this loragen's ({VERSION}); "
                             "upgrade loragen")
        ref, emb = data.get("reference_embeddings"), None
        if ref:
            emb = np.frombuffer(base64.b64decode(ref["base64"]), dtype="<f2").reshape(ref["shape"]).copy()
        feats = tuple(data["features"])
        rows = np.array([[np.nan if v is None else v for v in r] for r in data["rows"]], dtype=float)
        return cls(feats, rows.reshape(len(data["rows"]), len(feats)), np.asarray(data["targets"], float),
                   list(data["groups"]), data.get("target", "accuracy"), float(data["alpha"]),
                   float(data["coverage"]), dict(data.get("meta") or {}), emb)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrustModel:
        """Read a trust file written by `save`.

        Raises:
            ValueError: the file is not valid JSON or not a loragen trust file.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a JSON trust file ({err}); refit it with `loragen trust fit`") from None
        return cls.from_dict(data)
