"""Build tasks into a bank: train (or import) each task's oracle, score it, store it with its checkpoints.

Resumable: a task whose final adapter is already in the bank is skipped, and a task is stored in one go only after
training finishes, so an interrupted build loses at most the task in progress. Tasks come from any classification
provider (`bank.tasks`); their test examples and the classifier that scores the oracles come from it too.

Usage::

    from loragen.bank.store import Bank
    from loragen.bank.tasks import get_provider
    from loragen.bank.train import build_bank
    with Bank.open("bank.duckdb") as bank:
        summary = build_bank(bank, get_provider("minilm-suite").tasks()[:12])
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Classifier, OracleCache, classifier_for, provider_name, task_data, task_dir
from loragen.bank.train.oracle import TrainConfig, TrainResult, train_task_adapter

logger = logging.getLogger(__name__)

# Builds a task's oracle: from training, or from an oracle cache of pre-trained PEFT directories.
OracleSource = Callable[[TaskRecord, Classifier], TrainResult]


@dataclass
class BuildSummary:
    """What a build did: tasks trained and skipped, per-task seconds and accuracies."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    test_accuracy: dict[str, float] = field(default_factory=dict)
    base_accuracy: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        n = max(1, len(self.built))
        return {
            "built": len(self.built), "skipped": len(self.skipped),
            "mean_seconds_per_task": sum(self.seconds.values()) / n,
            "mean_test_accuracy": sum(self.test_accuracy.values()) / n if self.built else None,
            "mean_base_accuracy": sum(self.base_accuracy.values()) / n if self.built else None,
        }


def trained_oracles(config: TrainConfig | None = None) -> OracleSource:
    """Oracle source that trains each task with the Lightning recipe."""
    return lambda spec, clf: train_task_adapter(spec, config or TrainConfig(), clf)


def imported_oracles(root: str | Path, fallback: OracleSource | None = None) -> OracleSource:
    """Oracle source reading an oracle cache (`bank.tasks.oracle_cache`: `<root>/<task dir>/{final,ckpt-<step>}`).

    Tasks missing there are trained with `fallback` (default: the standard recipe). Scores the cache recorded
    (test_accuracy, base_accuracy, steps, train_seconds) are reused.
    """
    cache, fallback = OracleCache(root), fallback or trained_oracles()

    def load(spec: TaskRecord, clf: Classifier) -> TrainResult:
        final = cache.final(spec.name)
        if final is None:
            return fallback(spec, clf)
        meta = {"task": spec.name, "description": spec.description}
        checkpoints = [a.with_metadata(**meta, kind="checkpoint", step=step)
                       for step, a in cache.checkpoints(spec.name)]
        scores = {k: v for k, v in cache.metrics(spec.name).items()
                  if k in ("test_accuracy", "base_accuracy", "steps", "train_seconds")}
        return TrainResult(final=final.with_metadata(**meta, kind="final"), checkpoints=checkpoints,
                           metrics={"imported_from": str(task_dir(cache.root, spec.name)), **scores})

    return load


def build_task(bank, spec: TaskRecord, classifier: Classifier, oracle: OracleSource) -> dict:
    """Train (or import) one task's oracle, score it on the test split, store task, final and checkpoints.

    Returns:
        The metrics stored with the final adapter.
    """
    start = time.perf_counter()
    result = oracle(spec, classifier)
    n = len(spec.labels)
    metrics = {k: v for k, v in result.metrics.items() if k != "config"}
    # Imported oracles may come with their scores on the same test split; others are scored here.
    if "test_accuracy" not in metrics or "base_accuracy" not in metrics:
        test = task_data(spec).test
        metrics.setdefault("test_accuracy", classifier.accuracy(test, result.final, n))
        metrics.setdefault("base_accuracy", classifier.accuracy(test, None, n))
    metrics["split"] = spec.split
    metrics["seconds"] = time.perf_counter() - start
    bank.add_task(spec)
    store_result(bank, spec, result, metrics)
    return metrics


def store_result(bank, spec: TaskRecord, result: TrainResult, metrics: dict) -> list[str]:
    """Store a task's trained oracle: its trajectory checkpoints, then its final adapter with `metrics` (the
    final's presence marks the task as built, so it goes in last).

    Returns:
        The ids stored (an adapter already in the bank keeps its id), the final adapter's last.
    """
    source = trained_source(spec)
    ids = [bank.add(ckpt, task=spec.name, description=spec.description, kind="checkpoint", source=source,
                    metrics={"step": ckpt.metadata.get("step")}, on_duplicate="skip") for ckpt in result.checkpoints]
    return [*ids, bank.add(result.final, task=spec.name, description=spec.description, kind="final", source=source,
                           metrics=metrics, on_duplicate="skip")]


def trained_source(spec: TaskRecord) -> str:
    """The `source` recorded on the adapters the recipe trains for `spec` ("<provider>/<data version>")."""
    return f"{provider_name(spec) or 'unknown'}/{spec.data_ref.get('version', 1)}"


def build_bank(bank, tasks: Sequence[TaskRecord], oracle: OracleSource | None = None,
               classifier: Classifier | None = None, progress: bool = True) -> BuildSummary:
    """Build `tasks` into `bank`, skipping those already built.

    Args:
        bank: an open `bank.store.Bank`.
        tasks: tasks of one classification provider (e.g. `get_provider("minilm-suite").tasks()` or a subset).
        oracle: where oracles come from (default: `trained_oracles()`).
        classifier: shared classifier (default: a new one from the tasks' provider).
        progress: show a tqdm progress bar (off: one line per built task on stderr).

    Raises:
        TaskDataError: tasks of several providers without a classifier given, or a task no provider owns.
    """
    oracle = oracle or trained_oracles()
    summary = BuildSummary()
    built = {r.task for r in bank.adapters(kind="final")}
    todo = [t for t in tasks if t.name not in built]
    summary.skipped = [t.name for t in tasks if t.name in built]
    providers = sorted({str(provider_name(t)) for t in todo})
    if classifier is None and len(providers) > 1:
        raise TaskDataError(f"the tasks come from several providers {providers}; build each provider's tasks "
                            "separately (each has its own classifier)")
    classifier = classifier or (classifier_for(todo[0]) if todo else None)
    bar = tqdm(todo, desc="bank build", unit="task", disable=not progress)
    for spec in bar:
        metrics = build_task(bank, spec, classifier, oracle)
        summary.built.append(spec.name)
        summary.seconds[spec.name] = metrics["seconds"]
        summary.test_accuracy[spec.name] = metrics["test_accuracy"]
        summary.base_accuracy[spec.name] = metrics["base_accuracy"]
        bar.set_postfix(task=spec.name, acc=f"{metrics['test_accuracy']:.2f}", s=f"{metrics['seconds']:.1f}")
        if not progress:  # no bar (a background build's log): one line per task, so its log still shows progress
            print(f"bank build [{len(summary.built)}/{len(todo)}] {spec.name}: test accuracy "
                  f"{metrics['test_accuracy']:.3f}, {metrics['seconds']:.1f} s", file=sys.stderr, flush=True)
    return summary
