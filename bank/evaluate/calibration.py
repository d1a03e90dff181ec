"""Calibration metrics: reliability bins, expected calibration error (ECE) and AUROC, on plain arrays.

They live with the evaluation harness (which reports the per-token ECE of generation methods) and are what
`meta.calibration` (calibrators, reliability diagrams) and the trust reports build on.
"""

from __future__ import annotations

import numpy as np
import torch


def as_array(x) -> np.ndarray:
    """A tensor, list or array as a numpy array (on the CPU)."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def reliability_bins(confidence, correct, n_bins: int = 10) -> list[dict]:
    """Equal-width confidence bins on [0, 1]: per bin the count, mean confidence and accuracy.

    The last bin is closed ([0.9, 1.0]) so a confidence of exactly 1 is counted.
    """
    conf, corr = as_array(confidence).astype(float).ravel(), as_array(correct).astype(float).ravel()
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
    s, y = as_array(scores).astype(float).ravel(), as_array(positives).astype(bool).ravel()
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
