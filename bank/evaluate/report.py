"""The evaluation report: per-task rows, per-split summary, and its table, JSON and chart."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvalReport:
    """Per-task accuracies and per-split aggregates.

    Attributes:
        rows: one dict per (split, task, method): accuracy (mean over the split's wordings of the task).
        summary: split -> method -> {"accuracy", "normalised_gain", "n_tasks"} (generation tasks: "exact_match" and
            "loglik" in place of "accuracy"; `metric` names the one the gain is computed on).
        config: how the evaluation ran (examples per task, seed, tasks per split).
        trust: the stored trust models scored on the evaluation's cases (`loragen eval --trust`,
            `api.trust_check`); None: not checked, and left out of the JSON.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    trust: dict[str, Any] | None = None

    def methods(self) -> list[str]:
        seen = {r["method"]: None for r in self.rows}
        return list(seen)

    @property
    def metric(self) -> str:
        """The primary metric: "accuracy" (classification) or "exact_match" (generation)."""
        return str(self.config.get("metric", "accuracy"))

    def table(self) -> str:
        """Plain-text table: accuracy (or exact match) and normalised gain per method (rows) and split (columns)."""
        splits, metric = list(self.summary), self.metric
        short = {"accuracy": "acc", "exact_match": "em"}.get(metric, metric)
        width = max([12, *(len(m) + 2 for m in self.methods())])
        head = f"{'method':<{width}}" + "".join(f"{s + ' ' + short:>24}{'gain':>8}" for s in splits)
        lines = [head, "-" * len(head)]
        for m in self.methods():
            cells = []
            for s in splits:
                cell = self.summary[s].get(m)
                gain = cell["normalised_gain"] if cell else None
                acc = f"{cell[metric]:>24.3f}" if cell else f"{'-':>24}"
                cells.append(acc + (f"{gain:>8.3f}" if gain is not None else f"{'-':>8}"))
            lines.append(f"{m:<{width}}" + "".join(cells))
        lines.append("tasks: " + ", ".join(f"{s}={next(iter(self.summary[s].values()))['n_tasks']}"
                                           for s in splits if self.summary[s]))
        calibrated = [m for m in self.methods() if any("token_ece" in self.summary[s].get(m, {}) for s in splits)]
        if calibrated:  # generation tasks with predictive_samples: the per-token calibration block
            lines += ["", f"{'token ECE':<{width}}" + "".join(f"{s + ' ece':>24}{'nll':>8}" for s in splits)]
            for m in calibrated:
                cells = [(f"{c['token_ece']:>24.3f}{c['token_nll']:>8.2f}" if c and "token_ece" in c
                          else f"{'-':>24}{'-':>8}") for c in (self.summary[s].get(m) for s in splits)]
                lines.append(f"{m:<{width}}" + "".join(cells))
        return "\n".join(lines)

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write {"summary", "config", "per_task"} (and "trust" when checked) as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        data = {"summary": self.summary, "config": self.config, "per_task": self.rows}
        tmp.write_text(json.dumps(data if self.trust is None else {**data, "trust": self.trust}, indent=1))
        os.replace(tmp, path)
        return path

    def plot(self, path: str | os.PathLike) -> Path:
        """Bar chart of accuracy per method, grouped by split (matplotlib, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        splits, methods = list(self.summary), self.methods()
        width = 0.8 / max(1, len(methods))
        fig, ax = plt.subplots(figsize=(3.5 + 2.2 * len(splits), 4))
        colours = plt.get_cmap("tab20" if len(methods) > 10 else "tab10")  # one colour per row, no repeats
        for i, m in enumerate(methods):
            xs = [j + i * width for j in range(len(splits))]
            ax.bar(xs, [self.summary[s].get(m, {}).get(self.metric, 0.0) for s in splits], width, label=m,
                   color=colours(i % colours.N))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(splits))], splits)
        ax.set_ylabel(f"test {self.metric.replace('_', ' ')}")
        ax.set_ylim(0, 1)
        if self.metric == "accuracy":  # two-label chance; exact match has no such line
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(f"loragen: {self.metric.replace('_', ' ')} per method and split")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
