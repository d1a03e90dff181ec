"""Calibration, measured not assumed: reliability diagrams and a logistic calibrator saved as JSON (the metrics, ECE
and AUROC, are `bank.evaluate.calibration`'s)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from loragen.bank.evaluate.calibration import as_array, expected_calibration_error, reliability_bins


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
        x = torch.as_tensor(as_array(x), dtype=torch.float64)
        y = torch.as_tensor(as_array(correct), dtype=torch.float64).ravel()
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
        x = as_array(x).astype(float)
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
