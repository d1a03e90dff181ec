"""The oracle cache: a directory of trained task adapters in PEFT format, with an index of its tasks.

The one format every reader and writer of such a directory uses (`bench/build_oracle_cache.py` writes it;
`loragen bank build --import-dir`, `loragen train meta --oracles`, the hypernetwork's and ABMLL's benchmarks read
it)::

    <root>/tasks.json                   every task as a JSON object: the TaskRecord's fields, "status" ("pending",
                                        or "done" once its oracle is trained) and, once done, its metrics
                                        (test_accuracy, base_accuracy, steps, ...)
    <root>/results.jsonl                one {"name", "metrics"} line per trained task, appended as each finishes
                                        (the writer resumes from it)
    <root>/<task dir>/final/            the task's oracle adapter (PEFT directory)
    <root>/<task dir>/ckpt-<step>/      its trajectory checkpoints (PEFT directories), oldest first by step

with <task dir> the task name with "/" written as "__". Adapters are found from the task name alone, so a cache
moved elsewhere still reads; a directory of PEFT oracles without tasks.json still gives its adapters by name (and
the metrics in results.jsonl), only `tasks()` needs the index.

Usage::

    cache = OracleCache("/work/cache/oracles")
    for task in cache.tasks():                   # trained ("done") tasks
        final = cache.final(task.name)           # LoraAdapter or None
        steps = cache.checkpoints(task.name)     # [(step, LoraAdapter), ...]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loragen.bank.errors import TaskDataError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord

INDEX = "tasks.json"
RESULTS = "results.jsonl"
FINAL = "final"
CHECKPOINT_PREFIX = "ckpt-"
_FIELDS = {f.name for f in dataclasses.fields(TaskRecord)}


def task_dir(root: str | os.PathLike, name: str) -> Path:
    """Where task `name`'s adapters live under `root`: `<root>/<name with "/" as "__">`."""
    return Path(root) / name.replace("/", "__")


def task_to_row(task: TaskRecord) -> dict[str, Any]:
    """A TaskRecord as a tasks.json object (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(task).items()}


def task_from_row(row: Mapping[str, Any]) -> TaskRecord:
    """The TaskRecord of a tasks.json object (status and metrics ignored)."""
    return TaskRecord(**{k: tuple(v) if isinstance(v, list) and k != "data_ref" else v
                         for k, v in row.items() if k in _FIELDS})


class OracleCache:
    """Read and write one oracle cache directory (see the module docstring for the layout).

    Args:
        root: the cache directory (it need not exist yet when writing).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"OracleCache({str(self.root)!r})"

    # ---- reading ---------------------------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Every tasks.json object.

        Raises:
            TaskDataError: the directory has no readable tasks.json.
        """
        index = self.root / INDEX
        if not index.is_file():
            raise TaskDataError(f"{index}: no {INDEX}; is {self.root} an oracle cache? Build one with "
                                "`python bench/build_oracle_cache.py --out DIR`")
        try:
            return list(json.loads(index.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise TaskDataError(f"{index}: not a JSON list of tasks ({err})") from None

    def tasks(self, done_only: bool = True) -> list[TaskRecord]:
        """The indexed tasks: those whose oracle is trained (status "done"), or all with `done_only=False`."""
        return [task_from_row(r) for r in self.rows() if not done_only or r.get("status") == "done"]

    def recorded(self) -> dict[str, dict[str, Any]]:
        """Task name -> metrics from results.jsonl ({} when there is none)."""
        log = self.root / RESULTS
        if not log.is_file():
            return {}
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        return {r["name"]: r["metrics"] for r in map(json.loads, lines)}

    def metrics(self, name: str) -> dict[str, Any]:
        """Task `name`'s recorded metrics (results.jsonl, updated by its tasks.json object when done)."""
        out = dict(self.recorded().get(name, {}))
        if (self.root / INDEX).is_file():
            for row in self.rows():
                if row.get("name") == name and row.get("status") == "done":
                    out.update({k: v for k, v in row.items() if k not in _FIELDS})
        return out

    def has_final(self, name: str) -> bool:
        """Whether task `name`'s oracle adapter is in the cache."""
        return (task_dir(self.root, name) / FINAL / "adapter_config.json").is_file()

    def final(self, name: str) -> LoraAdapter | None:
        """Task `name`'s oracle adapter (None when the cache lacks it)."""
        from loragen.bank.lora.peft_format import load_peft

        return load_peft(task_dir(self.root, name) / FINAL) if self.has_final(name) else None

    def checkpoint_steps(self, name: str) -> list[int]:
        """The steps of task `name`'s trajectory checkpoints, ascending."""
        folder = task_dir(self.root, name)
        return sorted(int(p.name[len(CHECKPOINT_PREFIX):]) for p in folder.glob(CHECKPOINT_PREFIX + "*")
                      if p.name[len(CHECKPOINT_PREFIX):].isdigit())

    def checkpoints(self, name: str) -> list[tuple[int, LoraAdapter]]:
        """Task `name`'s trajectory checkpoints as (step, adapter), oldest first."""
        from loragen.bank.lora.peft_format import load_peft

        folder = task_dir(self.root, name)
        return [(s, load_peft(folder / f"{CHECKPOINT_PREFIX}{s}")) for s in self.checkpoint_steps(name)]

    # ---- writing ---------------------------------------------------------------------------------------------
    def save_oracle(self, name: str, final: LoraAdapter, checkpoints: Sequence[tuple[int, LoraAdapter]] = ()) -> Path:
        """Write task `name`'s oracle and its (step, adapter) checkpoints as PEFT directories; returns its folder."""
        from loragen.bank.lora.peft_format import save_peft

        folder = task_dir(self.root, name)
        for step, adapter in checkpoints:
            save_peft(adapter, folder / f"{CHECKPOINT_PREFIX}{step}")
        save_peft(final, folder / FINAL)  # last: its presence marks the task as cached
        return folder

    def record(self, name: str, metrics: Mapping[str, Any]) -> None:
        """Append task `name`'s metrics to results.jsonl."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / RESULTS).open("a") as f:
            f.write(json.dumps({"name": name, "metrics": dict(metrics)}) + "\n")

    def write_index(self, tasks: Sequence[TaskRecord], results: Mapping[str, Mapping[str, Any]]) -> Path:
        """Write tasks.json atomically: every task, with its results (which carry "status": "done") or pending."""
        self.root.mkdir(parents=True, exist_ok=True)
        rows = [{**task_to_row(t), **results.get(t.name, {"status": "pending"})} for t in tasks]
        tmp = self.root / (INDEX + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
        os.replace(tmp, self.root / INDEX)  # readers never see a half-written index
        return self.root / INDEX
