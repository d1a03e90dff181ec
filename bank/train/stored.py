"""Train oracles for a user's own tasks: those stored in the bank with their examples (data_ref provider "bank",
imported from a manifest with `loragen bank tasks import`).

Each task is trained from its train split with the Lightning recipe of its kind, over its base model:
classification over an encoder (`PrototypeClassifier`, `bank.train.oracle`), generation over a causal LM
(`bank.train.causal`). The final adapter and trajectory checkpoints are stored with the task like `build_bank`
stores suite oracles, with the val (and test) scores of the adapter and of the base model alone. Resumable: a
task that already has a final adapter is skipped unless `force`.

A suite's generation tasks (provider "smollm2-gen": `loragen bank build --provider smollm2-gen`) go the same way
through `train_provider_tasks`: their data comes from their provider, and each task is added to the bank as it is
stored.

Usage::

    from loragen.bank.store import Bank
    from loragen.bank.train.stored import train_stored_tasks
    with Bank.open("bank.duckdb") as bank:
        summary = train_stored_tasks(bank, base_model="./my-encoder", recipe={"steps": 60})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from loragen.bank.base_model import canonical_base_model_id, is_causal_lm
from loragen.bank.config import raise_problems
from loragen.bank.errors import LoragenError, NotFoundError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED, BankSource, TaskData, provider_for, provider_name
from loragen.bank.tasks.manifest import Kind, task_kind
from loragen.bank.train.build import store_result, trained_source
from loragen.bank.train.causal import CausalLM, train_causal_adapter
from loragen.bank.train.classifier import NUM_SLOTS, PrototypeClassifier
from loragen.bank.train.config import TrainConfig, TrainResult
from loragen.bank.train.lora_module import attention_targets
from loragen.bank.train.oracle import train_task_adapter

_HEADLINE = {"classification": ("accuracy",), "generation": ("exact_match", "loglik")}


@dataclass
class TaskOutcome:
    """One trained task: its kind, base model and the metrics stored with its final adapter."""

    task: str
    kind: Kind
    base_model: str
    metrics: dict[str, Any]

    def line(self) -> str:
        """One summary line: val metrics against the base model's, steps, seconds."""
        parts = []
        for name in _HEADLINE[self.kind]:
            value, base = self.metrics.get(f"val_{name}"), self.metrics.get(f"base_val_{name}")
            if value is not None:
                parts.append(f"val {name} {value:.3f} (base {base:.3f})")
        scores = ", ".join(parts) or "no val examples"
        return f"{self.task}: {scores}, {self.metrics['steps']} steps, {self.metrics['seconds']:.1f} s"


@dataclass
class StoredTrainSummary:
    """What `train_stored_tasks` did."""

    trained: list[TaskOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"trained": [o.task for o in self.trained], "skipped": list(self.skipped)}


def stored_tasks(bank, names: Sequence[str] | None = None) -> list[TaskRecord]:
    """The bank's own tasks (provider "bank"), all or those `names` picks.

    Raises:
        NotFoundError: a name that is not a task in the bank, or not one with stored examples.
    """
    tasks = {t.name: t for t in bank.tasks()}
    if names is None:
        return [t for t in tasks.values() if provider_name(t) == STORED]
    missing = [n for n in names if n not in tasks]
    foreign = [n for n in names if n in tasks and provider_name(tasks[n]) != STORED]
    if missing or foreign:
        raise NotFoundError(
            (f"no task(s) {missing} in the bank {bank.path} (import them: `loragen bank tasks import MANIFEST`); "
             if missing else "")
            + (f"task(s) {foreign} are suite tasks, built with `loragen bank build`" if foreign else ""))
    return [tasks[n] for n in dict.fromkeys(names)]


def _plan(bank, tasks: Sequence[TaskRecord], base_model: str | None) -> list[tuple[TaskRecord, str, TaskData]]:
    """(task, canonical base model, data) for each task, after checking all of them.

    Raises:
        ConfigError: every task without a base model, with a base model of the wrong kind, without stored
            examples or with too many labels.
    """
    problems: list[str] = []
    plan, causal = [], {}
    source = BankSource(bank)
    for task in tasks:
        name, kind = task.name, task_kind(task)
        chosen = base_model or task.data_ref.get("base_model")
        if not chosen:
            problems.append(f"task {name!r} names no base model; pass --base-model NAME|DIR (or set base_model "
                            "in its manifest entry)")
            continue
        try:
            base = canonical_base_model_id(chosen)
            causal.setdefault(base, is_causal_lm(base))
            data = (source if provider_name(task) == STORED else provider_for(task)).data(task)
        except LoragenError as err:
            problems.append(f"task {name!r}: {err}")
            continue
        if kind == "classification" and causal[base]:
            problems.append(f"task {name!r} is a classification task, but base model {base} is a causal LM; "
                            "classification oracles are trained over an encoder (e.g. minilm or a BERT-style "
                            "directory): pass --base-model ENCODER or set base_model in its manifest entry")
        elif kind == "generation" and not causal[base]:
            problems.append(f"task {name!r} is a generation task (input/output pairs), but base model {base} is an "
                            "encoder, not a causal LM: pass --base-model with a causal LM (e.g. smollm2 or a "
                            "local Llama/GPT-2 directory) or set base_model in its manifest entry")
        elif kind == "classification" and not 2 <= len(task.labels) <= NUM_SLOTS:
            problems.append(f"task {name!r} has {len(task.labels)} labels; a classification task has 2 to "
                            f"{NUM_SLOTS}")
        elif not data.train:
            problems.append(f"task {name!r} has no train examples stored; re-import its manifest")
        else:
            plan.append((task, base, data))
    raise_problems("bank train", problems)
    return plan


class _Trainer:
    """One base model loaded once, training and scoring every task of one kind over it."""

    def __init__(self, kind: Kind, base: str, recipe: Mapping[str, Any], device: str | None) -> None:
        self.kind = kind
        max_length = recipe.get("max_length", TrainConfig.max_length)
        if kind == "classification":
            self.model = PrototypeClassifier(base, max_length=max_length, device=device)
        else:
            self.model = CausalLM(base, device=device)
        targets = recipe.get("target_modules") or attention_targets(self.model.model)
        self.config = TrainConfig(**{**recipe, "target_modules": targets})

    def train(self, task: TaskRecord, data: TaskData) -> TrainResult:
        if self.kind == "classification":
            return train_task_adapter(task, self.config, self.model, data)
        return train_causal_adapter(task, data, self.model, self.config)

    def scores(self, task: TaskRecord, data: TaskData, result: TrainResult,
               splits: Sequence[str] = ("val", "test")) -> dict[str, float]:
        """The adapter's and the base model's scores on `splits` (those with examples)."""
        out: dict[str, float] = {}
        for split in splits:
            pairs = getattr(data, split)
            if not pairs:
                continue
            for prefix, adapter in (("", result.final), ("base_", None)):
                if self.kind == "classification":
                    out[f"{prefix}{split}_accuracy"] = self.model.accuracy(pairs, adapter, len(task.labels))
                else:
                    for name, value in self.model.scores(pairs, adapter, self.config.max_length).items():
                        out[f"{prefix}{split}_{name}"] = value
        if "test_accuracy" in out:  # the names build_bank records for suite oracles
            out["base_accuracy"] = out["base_test_accuracy"]
        return out


def train_stored_tasks(bank, names: Sequence[str] | None = None, *, base_model: str | None = None,
                       recipe: Mapping[str, Any] | None = None, force: bool = False, device: str | None = "cpu",
                       progress: bool = True, report: Callable[[TaskOutcome], None] | None = None,
                       ) -> StoredTrainSummary:
    """Train and store an oracle for each of the bank's own tasks that has none yet.

    Args:
        bank: an open `bank.store.Bank`.
        names: only these tasks (default: every task with data_ref provider "bank").
        base_model: train over this base model (default: each task's `data_ref["base_model"]`).
        recipe: `TrainConfig` fields (e.g. from `load_recipe`); `target_modules` defaults to the base model's
            attention projections (query/key/value, q_proj/v_proj or c_attn).
        force: retrain tasks that already have a final adapter (the adapters trained for them before are
            replaced; imported ones stay).
        device: "cpu", "cuda", "auto" or None (auto).
        progress: show a tqdm progress bar over the tasks.
        report: called with each task's outcome once it is stored.

    Raises:
        NotFoundError: `names` has a task that is not in the bank or not the bank's own.
        ConfigError: listing every task that cannot be trained (no base model, one of the wrong kind, no data),
            before anything is trained.
    """
    recipe = dict(recipe or {})
    TrainConfig(**recipe)  # a bad recipe fails before any model loads
    return _train(bank, stored_tasks(bank, names), base_model, recipe, force, device, progress, report,
                  ("val", "test"))


def train_provider_tasks(bank, tasks: Sequence[TaskRecord], *, base_model: str | None = None,
                         recipe: Mapping[str, Any] | None = None, force: bool = False, device: str | None = "cpu",
                         progress: bool = True, report: Callable[[TaskOutcome], None] | None = None,
                         splits: Sequence[str] = ("val",)) -> StoredTrainSummary:
    """Train and store an oracle for each of a suite's tasks (e.g. the generative suite "smollm2-gen"): each task
    is added to the bank with its provider's data reference, then trained and scored as `train_stored_tasks` does.

    Args:
        bank: an open `bank.store.Bank`.
        tasks: tasks of registered providers (`bank.tasks.get_provider(name).tasks()` or a subset).
        base_model, recipe, force, device, progress, report: as `train_stored_tasks` (the default base model is
            each task's `data_ref["base_model"]`).
        splits: the splits the adapter and the base model are scored on (default val only: the evaluation
            harness scores the test split; greedy generation costs a suite build as much as training).

    Raises:
        ConfigError: as `train_stored_tasks`, before anything is trained.
    """
    recipe = dict(recipe or {})
    TrainConfig(**recipe)
    return _train(bank, list(tasks), base_model, recipe, force, device, progress, report, splits)


def _train(bank, tasks: list[TaskRecord], base_model: str | None, recipe: dict[str, Any], force: bool,
           device: str | None, progress: bool, report: Callable[[TaskOutcome], None] | None,
           splits: Sequence[str]) -> StoredTrainSummary:
    built = {r.task for r in bank.adapters(kind="final")}
    summary = StoredTrainSummary(skipped=[t.name for t in tasks if t.name in built and not force])
    plan = _plan(bank, [t for t in tasks if force or t.name not in built], base_model)
    plan.sort(key=lambda item: item[1])  # one base model loaded at a time
    trainer: _Trainer | None = None
    for task, base, data in tqdm(plan, desc="bank train", unit="task", disable=not progress):
        kind = task_kind(task)
        if trainer is None or (trainer.kind, trainer.model.base_model_id) != (kind, base):
            trainer = _Trainer(kind, base, recipe, device)
        start = time.perf_counter()
        result = trainer.train(task, data)
        metrics = {k: v for k, v in result.metrics.items() if k != "config"}
        scored = time.perf_counter()
        metrics.update(trainer.scores(task, data, result, splits), base_model=base, kind=kind, split=task.split,
                       recipe=result.metrics["config"])
        metrics["score_seconds"] = time.perf_counter() - scored
        metrics["seconds"] = time.perf_counter() - start
        # Forced: drop what the recipe trained for the task before (imported adapters stay). Only now, so a failed
        # run keeps the old oracle; and before storing, since a retrain can reproduce an old adapter exactly.
        for record in bank.adapters(task=task.name):
            if record.kind in ("final", "checkpoint") and record.source == trained_source(task):
                bank.delete(record.id)
        if provider_name(task) != STORED:
            bank.add_task(task)
        store_result(bank, task, result, metrics)
        outcome = TaskOutcome(task.name, kind, base, metrics)
        summary.trained.append(outcome)
        if report is not None:
            report(outcome)
    return summary
