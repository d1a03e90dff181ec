"""ABMLL's training data: suite tasks with their examples, description wordings and (optionally) bank adapters."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.meta.model import LoraLayout
from loragen.meta.train import MetaTask

log = logging.getLogger(__name__)
OOD_DESCRIPTIONS = Path(__file__).parent / "data" / "ood_descriptions.json"


def training_wordings(task: TaskRecord) -> list[str]:
    """The wordings ABMLL may train on: the description and its training paraphrases (never held-out ones)."""
    return [task.description, *task.paraphrases]


def meta_tasks(
    tasks: Sequence[TaskRecord],
    encode: Callable[[list[str]], np.ndarray],
    examples: Callable[[TaskRecord], tuple[list[tuple[str, int]], list[tuple[str, int]]]],
    layout: LoraLayout | None = None,
    adapters: Mapping[str, LoraAdapter] | None = None,
) -> list[MetaTask]:
    """Turn task records into `MetaTask`s.

    Args:
        tasks: in-bank tasks (held-out tasks must never be passed here).
        encode: description encoder (the bank's `TextEncoder().encode`).
        examples: task -> (query examples, support examples), e.g. the suite's train and val splits.
        layout, adapters: the task's known adapter (the bank's oracle) flattened into `layout` for the warm start.

    Raises:
        ValueError: a held-out task was passed.
    """
    held = [t.name for t in tasks if t.split != "train"]
    if held:
        raise ValueError(f"held-out tasks must not be trained on: {held[:5]}")
    wordings = [training_wordings(t) for t in tasks]
    flat = encode([w for ws in wordings for w in ws])
    out, i = [], 0
    for task, ws in zip(tasks, wordings):
        emb = torch.as_tensor(np.asarray(flat[i : i + len(ws)]), dtype=torch.float32)  # (P, E)
        i += len(ws)
        query, support = examples(task)
        known = adapters.get(task.name) if adapters else None
        vec = layout.flatten(known) if (known is not None and layout is not None) else None
        out.append(MetaTask(task.name, task.description, emb, query, support, vec, len(task.labels)))
    return out


def suite_examples(n_train: int | None = None, n_val: int | None = None):
    """The suite's examples per task: (train split as queries, validation split as support)."""
    from loragen.bank.suite import task_data

    def get(task: TaskRecord):
        data = task_data(task)
        return data.train[:n_train] if n_train else data.train, data.val[:n_val] if n_val else data.val

    return get


def bank_adapters(bank, tasks: Sequence[TaskRecord], kind: str = "final") -> dict[str, LoraAdapter]:
    """The most recent adapter of `kind` per task from an open bank (canonical form)."""
    out = {}
    for task in tasks:
        recs = bank.adapters(task=task.name, kind=kind)
        if recs:
            out[task.name] = bank.get(recs[-1].id)
    return out


def cache_adapters(directory: str | Path, tasks: Sequence[TaskRecord]) -> dict[str, LoraAdapter]:
    """Oracle adapters from a directory of PEFT adapters with a tasks.json index (the suite's dev cache).

    tasks.json maps task name -> subdirectory (a dict, or a list of {"name"/"task", "path"/"dir"} entries);
    without it, subdirectory names are task names with "/" written as "__". The final adapter is the directory
    itself or its `final/` subdirectory (trajectory checkpoints sit beside it).
    """
    from loragen.bank.lora import load_peft

    directory = Path(directory)
    index: dict[str, str] = {}
    meta = directory / "tasks.json"
    if meta.is_file():
        raw = json.loads(meta.read_text())
        if isinstance(raw, dict):
            raw = raw.get("tasks", raw)
        if isinstance(raw, dict):
            index = {k: (v if isinstance(v, str) else v.get("path") or v.get("dir")) for k, v in raw.items()}
        else:
            index = {e.get("name") or e.get("task"): e.get("path") or e.get("dir") for e in raw}
    out = {}
    for task in tasks:
        sub = index.get(task.name) or task.name.replace("/", "__")
        for path in (directory / sub, directory / sub / "final"):
            if (path / "adapter_config.json").is_file():
                out[task.name] = load_peft(path)
                break
    return out


def ood_descriptions(path: str | Path = OOD_DESCRIPTIONS) -> list[str]:
    """Descriptions of tasks unlike anything in the suite (for the out-of-distribution check)."""
    return list(json.loads(Path(path).read_text())["descriptions"])
