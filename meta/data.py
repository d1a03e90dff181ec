"""ABMLL's training data: tasks with their examples, description wordings and (optionally) known adapters.

Tasks and known adapters come from a training source (`bank.tasks.TaskSource`: the bank, or an oracle cache);
examples from each task's provider (`bank.tasks.task_data`) or, for a user's task, from the bank that stores them
(`TaskSource.data`), never from a suite directly. A classification task's examples are (text, label index) pairs,
a generation task's (input, reference output) string pairs.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Example, TaskSource, task_data
from loragen.meta.model import LoraLayout, TaskBatch

log = logging.getLogger(__name__)
OOD_DESCRIPTIONS = Path(__file__).parent / "data" / "ood_descriptions.json"


@dataclass
class MetaTask:
    """One training task for ABMLL.

    Args:
        name: task name. description: its description (or one paraphrase).
        embedding: the description's embedding (embed_dim,), or one row per wording (P, embed_dim): each step
            then conditions on a random wording (paraphrase augmentation).
        examples: (text, label index) pairs, or (input, output) pairs of a generation task, the likelihood is
            evaluated on.
        support: examples for ABML refinement during training (used when inner_steps > 0).
        adapter: optional known adapter of the task as a flat vector (D,) (the bank's oracle), for the warm start.
        num_labels: how many labels the task has.
    """

    name: str
    description: str
    embedding: torch.Tensor
    examples: list[Example]
    support: list[Example] = field(default_factory=list)
    adapter: torch.Tensor | None = None
    num_labels: int = 2

    def wordings(self) -> torch.Tensor:
        """The embeddings as (P, embed_dim)."""
        return self.embedding if self.embedding.ndim == 2 else self.embedding.unsqueeze(0)


def _targets(ys: list, dtype: torch.dtype | None = None) -> torch.Tensor | list[str]:
    """Label indices as a tensor; reference outputs (strings) as they are."""
    if any(isinstance(y, str) for y in ys):
        return [str(y) for y in ys]
    return torch.tensor(ys, dtype=dtype) if dtype is not None else torch.tensor(ys)


def make_batch(tasks: Sequence[MetaTask], n_examples: int, rng: random.Random, with_support: bool) -> TaskBatch:
    """A `TaskBatch` with a random subset of at most `n_examples` examples per task."""
    texts, labels, s_texts, s_labels = [], [], [], []
    for task in tasks:
        ex = rng.sample(task.examples, min(n_examples, len(task.examples)))
        texts.append([t for t, _ in ex])
        labels.append(_targets([y for _, y in ex]))
        if with_support:
            sup = rng.sample(task.support, min(n_examples, len(task.support))) if task.support else []
            s_texts.append([t for t, _ in sup])
            s_labels.append(_targets([y for _, y in sup], dtype=torch.long))
    emb = [t.wordings()[rng.randrange(t.wordings().shape[0])] for t in tasks]
    return TaskBatch(torch.stack(emb), texts, labels, s_texts, s_labels, [t.name for t in tasks],
                     [t.num_labels for t in tasks])


def training_wordings(task: TaskRecord) -> list[str]:
    """The wordings ABMLL may train on: the description and its training paraphrases (never held-out ones)."""
    return [task.description, *task.paraphrases]


def meta_tasks(
    tasks: Sequence[TaskRecord],
    encode: Callable[[list[str]], np.ndarray],
    examples: Callable[[TaskRecord], tuple[list[Example], list[Example]]],
    layout: LoraLayout | None = None,
    adapters: Mapping[str, LoraAdapter] | None = None,
) -> list[MetaTask]:
    """Turn task records into `MetaTask`s.

    Args:
        tasks: in-bank tasks (held-out tasks must never be passed here).
        encode: description encoder (the bank's `TextEncoder().encode`).
        examples: task -> (query examples, support examples), e.g. `task_examples()`: train and val splits.
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


def task_examples(n_train: int | None = None, n_val: int | None = None
                  ) -> Callable[[TaskRecord], tuple[list[Example], list[Example]]]:
    """Each task's examples from its provider: (train split as queries, validation split as support).

    The getter raises `TaskDataError` naming a task whose data no provider can rebuild.
    """

    def get(task: TaskRecord) -> tuple[list[Example], list[Example]]:
        data = task_data(task)
        return data.train[:n_train] if n_train else data.train, data.val[:n_val] if n_val else data.val

    return get


def source_examples(source: TaskSource, n_train: int | None = None, n_val: int | None = None
                    ) -> Callable[[TaskRecord], tuple[list[Example], list[Example]]]:
    """Each task's examples from the training source (the bank stores a user's tasks' examples): (train split as
    queries, validation split as support).

    The getter raises `TaskDataError` naming a task whose examples the source cannot reach.
    """

    def get(task: TaskRecord) -> tuple[list[Example], list[Example]]:
        data = source.data(task)
        return data.train[:n_train] if n_train else data.train, data.val[:n_val] if n_val else data.val

    return get


def known_adapters(source: TaskSource, tasks: Sequence[TaskRecord]) -> dict[str, LoraAdapter]:
    """The most recent final adapter per task (its oracle), for the tasks the source has one for."""
    out = {}
    for task in tasks:
        finals = source.adapters(task.name, kinds=("final",))
        if finals:
            out[task.name] = finals[-1][0]
    return out


def ood_descriptions(path: str | Path = OOD_DESCRIPTIONS) -> list[str]:
    """Descriptions of tasks unlike anything in the suite (for the out-of-distribution check)."""
    return list(json.loads(Path(path).read_text())["descriptions"])
