"""How well a trust model's (cross-validated) estimates predict measured accuracy, per task: the numbers issue 16
accepts on, and a reliability diagram of predicted vs measured accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loragen.bank.evaluate.calibration import auroc
from loragen.meta.calibration import finish_diagram
from loragen.meta.trust import TrustEstimate, TrustModel

LOW = 0.7  # an adapter below this accuracy should be flagged
CHANCE_MARGIN = 0.05  # within this of 1/K counts as chance level
CHANCE_CEILING = 0.8  # a chance-level adapter must never be predicted above this


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def trust_metrics(predicted: Sequence[float], measured: Sequence[float], chance: Sequence[float],
                  low: Sequence[float] | None = None, high: Sequence[float] | None = None) -> dict:
    """Task-level quality of trust estimates.

    Args:
        predicted: expected accuracy per case. measured: the real accuracy. chance: 1/K per case.
        low / high: the intervals (for their empirical coverage).

    Returns:
        mean_abs_error, spearman, auroc_below_0.7 (a low prediction flags accuracy < 0.7; None when one class is
        missing), chance_level (how many), chance_above_0.8 (violations), interval_coverage, n.
    """
    p, m, c = (np.asarray(v, float) for v in (predicted, measured, chance))
    below = m < LOW
    chance_level = np.abs(m - c) <= CHANCE_MARGIN
    out = {"n": int(len(p)), "mean_predicted": float(p.mean()), "mean_measured": float(m.mean()),
           "mean_abs_error": float(np.abs(p - m).mean()), "spearman": spearman(p, m),
           f"auroc_below_{LOW}": auroc(-p, below) if 0 < below.sum() < len(p) else None,
           "chance_level": int(chance_level.sum()),
           f"chance_above_{CHANCE_CEILING}": int((chance_level & (p > CHANCE_CEILING)).sum())}
    if low is not None and high is not None:
        lo, hi = np.asarray(low, float), np.asarray(high, float)
        out["interval_coverage"] = float(((m >= lo) & (m <= hi)).mean())
        out["mean_interval_width"] = float((hi - lo).mean())
    return out


def cross_validated_metrics(model: TrustModel) -> tuple[list[TrustEstimate], dict]:
    """A trust model's task-grouped out-of-fold estimates of its own calibration cases, and their `trust_metrics`
    (chance level from each case's `chance` feature, 0 where a case has none: generation)."""
    cv = model.cross_validated()
    chance = [model.row(i).get("chance") or 0.0 for i in range(len(cv))]
    return cv, trust_metrics([e.expected for e in cv], model.targets, chance, [e.low for e in cv],
                             [e.high for e in cv])


def metrics_by_condition(cases: Sequence[dict]) -> dict[str, dict]:
    """`trust_metrics` per request condition (description / labels / examples) of scored calibration cases (dicts
    with condition, predicted, low, high, measured and the chance feature)."""
    out = {}
    for condition in sorted({c["condition"] for c in cases}):
        sub = [c for c in cases if c["condition"] == condition]
        out[condition] = trust_metrics([c["predicted"] for c in sub], [c["measured"] for c in sub],
                                       [c["features"].get("chance") or 0.0 for c in sub], [c["low"] for c in sub],
                                       [c["high"] for c in sub])
    return out


def trust_diagram(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                  title: str = "Trust: predicted vs measured accuracy per task (cross-validated)") -> Path | None:
    """Scatter of predicted vs measured accuracy per method (one point per case) with the diagonal.

    Returns:
        The PNG path, or None when matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.axhline(LOW, color="grey", lw=0.5)
    for name, (pred, meas) in curves.items():
        err = float(np.abs(np.asarray(pred) - np.asarray(meas)).mean()) if len(pred) else float("nan")
        ax.plot(pred, meas, "o", alpha=0.6, label=f"{name} (MAE {err:.3f})")
    return finish_diagram(fig, ax, path, xlabel="predicted accuracy", ylabel="measured accuracy", title=title)
