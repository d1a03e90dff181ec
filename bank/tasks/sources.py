"""Training sources: tasks together with their known adapters, where both generators learn from.

A `TaskSource` is what `hypernet.train.train_hypernet` and `meta.train.train_abmll` read: the tasks (in-bank ones
have split "train"), each task's adapters (its final oracle, and trajectory checkpoints as augmentation), and a
few labelled training examples per task (from the task's provider, `bank.tasks.registry.training_examples`).

    BankSource(bank)          an open `bank.store.Bank`
    OracleCacheSource(root)   an oracle cache directory (`bank.tasks.oracle_cache`)
    MemorySource(...)         everything in memory (a snapshot of another source, or tests)
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from loragen.bank.errors import TaskDataError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks.oracle_cache import OracleCache
from loragen.bank.tasks.provider import Example, TaskData
from loragen.bank.tasks.registry import STORED, provider_name, task_data, training_examples

ADAPTER_KINDS = ("final", "checkpoint")


@runtime_checkable
class TaskSource(Protocol):
    """Where tasks and their adapters come from (the bank, an oracle cache, or memory)."""

    def tasks(self) -> list[TaskRecord]:
        """Every task (training reads only split "train")."""
        ...

    def adapters(self, task: str, kinds: Collection[str] = ADAPTER_KINDS) -> list[tuple[LoraAdapter, str]]:
        """The task's adapters of `kinds` as (adapter, kind), finals first, each kind oldest first."""
        ...

    def examples(self, task: TaskRecord, n: int, seed: int) -> list[Example]:
        """Up to `n` labelled training examples of the task (empty when it has no data)."""
        ...

    def data(self, task: TaskRecord) -> TaskData:
        """All of the task's examples (train/val/test).

        Raises:
            TaskDataError: the task has no data this source can reach.
        """
        ...


def _sample(pool: Sequence[Example], n: int, seed: int) -> list[Example]:
    return random.Random(seed).sample(list(pool), min(n, len(pool)))


@dataclass
class MemorySource:
    """A `TaskSource` held in memory."""

    task_list: list[TaskRecord]
    adapter_map: dict[str, list[tuple[LoraAdapter, str]]]
    example_map: dict[str, list[Example]] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the tensors
        return f"MemorySource({len(self.task_list)} tasks)"

    def tasks(self) -> list[TaskRecord]:
        return list(self.task_list)

    def adapters(self, task: str, kinds: Collection[str] = ADAPTER_KINDS) -> list[tuple[LoraAdapter, str]]:
        return [(a, k) for a, k in self.adapter_map.get(task, []) if k in kinds]

    def examples(self, task: TaskRecord, n: int, seed: int) -> list[Example]:
        return _sample(self.example_map.get(task.name, []), n, seed)

    def data(self, task: TaskRecord) -> TaskData:
        if task.name not in self.example_map:
            raise TaskDataError(f"task {task.name!r} has no examples in this MemorySource")
        return TaskData(train=list(self.example_map[task.name]), val=[], test=[])


class BankSource:
    """A `TaskSource` over an open `bank.store.Bank`; examples come from each task's provider."""

    def __init__(self, bank: Any) -> None:
        self.bank = bank

    def __repr__(self) -> str:
        return f"BankSource({str(getattr(self.bank, 'path', self.bank))!r})"

    def tasks(self) -> list[TaskRecord]:
        return self.bank.tasks()

    def adapters(self, task: str, kinds: Collection[str] = ADAPTER_KINDS) -> list[tuple[LoraAdapter, str]]:
        records = [r for r in self.bank.adapters(task=task) if r.kind in kinds]
        records.sort(key=lambda r: (r.kind != "final", r.created_at, r.id))
        return [(self.bank.get(r.id), r.kind) for r in records]

    def examples(self, task: TaskRecord, n: int, seed: int) -> list[Example]:
        if provider_name(task) != STORED:
            return training_examples(task, n, seed)
        return _sample(self.data(task).train, n, seed)

    def data(self, task: TaskRecord) -> TaskData:
        """The task's examples: stored in the bank for a user's task, else rebuilt by its provider."""
        if provider_name(task) != STORED:
            return task_data(task)
        stored = self.bank.task_data(task.name)
        if stored is None:
            raise TaskDataError(f"task {task.name!r} says its examples are in the bank, but none are stored; import "
                                "them with its manifest: `loragen bank tasks import MANIFEST`")
        return TaskData(**stored)


class OracleCacheSource:
    """A `TaskSource` over an oracle cache directory: its trained tasks and their PEFT adapters; examples come from
    each task's provider.

    Raises:
        TaskDataError: the directory has no tasks.json.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.cache = OracleCache(root)
        self._tasks = self.cache.tasks()

    def __repr__(self) -> str:
        return f"OracleCacheSource({str(self.cache.root)!r})"

    def tasks(self) -> list[TaskRecord]:
        return list(self._tasks)

    def adapters(self, task: str, kinds: Collection[str] = ADAPTER_KINDS) -> list[tuple[LoraAdapter, str]]:
        final = self.cache.final(task) if "final" in kinds else None
        out = [(final, "final")] if final is not None else []
        if "checkpoint" in kinds and self.cache.has_final(task):
            out += [(a, "checkpoint") for _, a in self.cache.checkpoints(task)]
        return out

    def examples(self, task: TaskRecord, n: int, seed: int) -> list[Example]:
        return training_examples(task, n, seed)

    def data(self, task: TaskRecord) -> TaskData:
        return task_data(task)

    def metrics(self, task: str) -> dict[str, Any]:
        """The task's recorded metrics (test_accuracy, base_accuracy, ...)."""
        return self.cache.metrics(task)
