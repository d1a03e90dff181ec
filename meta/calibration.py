"""Calibration, measured not assumed: ECE, reliability diagrams, AUROC, and a logistic calibrator saved as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def _as_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def reliability_bins(confidence, correct, n_bins: int = 10) -> list[dict]:
    """Equal-width confidence bins on [0, 1]: per bin the count, mean confidence and accuracy.

    The last bin is closed ([0.9, 1.0]) so a confidence of exactly 1 is counted.
    """
    conf, corr = _as_np(confidence).astype(float).ravel(), _as_np(correct).astype(float).ravel()
    if conf.shape != corr.shape:
        raise ValueError(f"confidence has {conf.size} entries but correct has {corr.size}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError(f"confidences must lie in [0, 1], got range [{conf.min()}, {conf.max()}]")
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": n,
                     "confidence": float(conf[sel].mean()) if n else None,
                     "accuracy": float(corr[sel].mean()) if n else None})
    return bins


def expected_calibration_error(confidence, correct, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / n) · |acc_b − conf_b| over equal-width bins (Guo et al., 2017).

    Args:
        confidence: (n,) confidence of each prediction in [0, 1]. correct: (n,) 1 where the prediction was right.

    Raises:
        ValueError: empty or mismatched inputs, confidences outside [0, 1].
    """
    bins = reliability_bins(confidence, correct, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        raise ValueError("ECE needs at least one prediction")
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def auroc(scores, positives) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count half.

    Raises:
        ValueError: only one class present.
    """
    s, y = _as_np(scores).astype(float).ravel(), _as_np(positives).astype(bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_diagram(curves: dict[str, tuple[Sequence[float], Sequence[int]]], path: str | Path,
                        n_bins: int = 10, title: str = "Reliability on held-out tasks") -> Path:
    """Write a reliability diagram PNG: accuracy vs confidence per method, with ECE in the legend.

    Args:
        curves: method name -> (confidences, correct flags).
        path: where the PNG goes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, (conf, corr) in curves.items():
        bins = [b for b in reliability_bins(conf, corr, n_bins) if b["count"]]
        ece = expected_calibration_error(conf, corr, n_bins)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=f"{name} (ECE {ece:.3f})")
    return finish_diagram(fig, ax, path, xlabel="confidence", ylabel="accuracy", title=title)


def finish_diagram(fig, ax, path: str | Path, *, xlabel: str, ylabel: str, title: str) -> Path:
    """Label a unit-square diagram, save it as PNG at `path` (folders created) and close the figure."""
    import matplotlib.pyplot as plt

    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass
class LogisticCalibrator:
    """P(correct | features) = sigmoid(w · standardise(x) + b), fit by L2-regularised logistic regression.

    Args:
        features: names of the features, in column order. mean, std: standardisation. weight, bias: the fit.
    """

    features: tuple[str, ...]
    mean: list[float]
    std: list[float]
    weight: list[float]
    bias: float

    @classmethod
    def fit(cls, x, correct, features: Sequence[str], l2: float = 1e-3, steps: int = 500,
            monotone: Sequence[str] = ()) -> LogisticCalibrator:
        """Fit on validation predictions.

        Args:
            x: (n, f) features. correct: (n,) 1 where the prediction was right. features: their names.
            l2: ridge penalty. steps: L-BFGS iterations.
            monotone: features whose weight is constrained to be >= 0 (confidence may only grow with them,
                e.g. similarity to the bank, which validation data alone may not pin down).
        """
        x = torch.as_tensor(_as_np(x), dtype=torch.float64)
        y = torch.as_tensor(_as_np(correct), dtype=torch.float64).ravel()
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(features):
            raise ValueError(f"x must be (n, {len(features)}) matching {y.shape[0]} labels, got {tuple(x.shape)}")
        mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
        z = (x - mean) / std
        mono = torch.tensor([f in monotone for f in features])
        w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            w_eff = torch.where(mono, torch.nn.functional.softplus(w), w)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w_eff + b, y) + l2 * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            w_final = torch.where(mono, torch.nn.functional.softplus(w), w)
        return cls(tuple(features), mean.tolist(), std.tolist(), w_final.tolist(), float(b.detach()))

    def __call__(self, x) -> np.ndarray:
        """Calibrated confidences (n,) in [0, 1] for features (n, f)."""
        x = _as_np(x).astype(float)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected features {list(self.features)} as (n, {len(self.features)}), got {x.shape}")
        z = (x - np.asarray(self.mean)) / np.asarray(self.std)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weight) + self.bias)))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": "logistic", **self.__dict__, "features": list(self.features)}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LogisticCalibrator:
        """Read a calibrator written by `save`.

        Raises:
            ValueError: the file is not a logistic calibrator.
        """
        data = json.loads(Path(path).read_text())
        if data.pop("kind", None) != "logistic":
            raise ValueError(f"{path} is not a loragen logistic calibrator (fit one with bench/meta_eval.py)")
        data["features"] = tuple(data["features"])
        return cls(**data)
