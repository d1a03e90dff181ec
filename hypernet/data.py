"""Training data for the hypernetwork: bank tasks and their adapters as (condition, module tokens) items.

Each training item is one adapter of an in-bank task (its final adapter, or a trajectory checkpoint as augmentation
at a lower loss weight) paired, freshly each epoch, with one of the task's training wordings (the template
description or an in-bank paraphrase, never a held-out paraphrase), with label names with probability p_labels and
with `n_examples` labelled examples (embedded once by the base model, averaged per label) with probability
p_examples. Held-out tasks (split "heldout") are never read. Tasks, adapters and examples come from a training
source (`bank.tasks.TaskSource`: `BankSource(bank)`, `OracleCacheSource(dir)`, or a `MemorySource` snapshot).

A generation task (no labels) is conditioned on its description alone (no slots, no label names, no examples);
a classification task whose description names no label index gets label names and examples but no clause slots.
Which optional channels the bank could fit is recorded (`HypernetDataModule.channels`), so generation refuses a
request that uses a channel the checkpoint never learnt.

Everything heavy (canonical tokens, text embeddings) is computed once in `setup`; items are then cheap tensor
lookups, so a step costs the model's forward/backward only.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from loragen.bank.describe import segment_description
from loragen.bank.errors import ConfigError, TaskDataError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Example, TaskSource
from loragen.hypernet.bank_layout import choose_layout
from loragen.hypernet.condition import (
    EXAMPLES,
    LABEL,
    SEGMENT,
    ConditionTexts,
    RawCondition,
    TextEncode,
    collate_conditions,
    embed_conditions,
)
from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.layout import AdapterLayout

log = logging.getLogger(__name__)


def training_tasks(source: TaskSource) -> list[TaskRecord]:
    """In-bank tasks that have at least one adapter, sorted by name (a stable order on every rank)."""
    return sorted((t for t in source.tasks() if t.split == "train"), key=lambda t: t.name)


def task_kind(task: TaskRecord) -> str:
    """"classification" (the task has label names) or "generation" (it has none)."""
    return "classification" if task.labels else "generation"


def find_layout(source: TaskSource, skip_mismatched: bool = False) -> AdapterLayout:
    """The majority layout of the in-bank tasks' adapters (see `hypernet.bank_layout.choose_layout`).

    Raises:
        ConfigError: the source has no in-bank task with an adapter (naming the commands that add some), or
            adapters of several layouts without `skip_mismatched`.
    """
    tasks = training_tasks(source)
    return choose_layout({t.name: source.adapters(t.name) for t in tasks}, skip_mismatched)[0]


def classification_pool(task: TaskRecord, pool: Sequence[Example]) -> list[tuple[str, int]]:
    """The (text, label index) examples of a classification task's pool with a valid label; none for a generation
    task (its (input, output) pairs are no per-label channel)."""
    n = len(task.labels)
    return [(t, y) for t, y in pool if n and isinstance(t, str) and isinstance(y, int) and not isinstance(y, bool)
            and 0 <= y < n]


@dataclass
class _TaskEntry:
    task: TaskRecord
    wordings: list[RawCondition]  # one per training description wording, no labels/examples
    labels: torch.Tensor  # (n_labels, D)
    example_vecs: torch.Tensor  # (P, D) embedded example pool
    example_ys: torch.Tensor  # (P,)


class HypernetDataset(Dataset):
    """Items: (adapter tokens, loss weight, condition) with condition options redrawn per epoch."""

    def __init__(self, tokens: torch.Tensor, weights: torch.Tensor, task_ids: list[int], entries: list[_TaskEntry],
                 config: HypernetConfig, seed: int, train: bool = True) -> None:
        self.tokens, self.weights, self.task_ids, self.entries = tokens, weights, task_ids, entries
        self.cc = config.condition
        self.seed, self.train, self.epoch = seed, train, 0

    def __len__(self) -> int:
        return len(self.task_ids)

    def __getitem__(self, i: int):
        rng = random.Random(f"{self.seed}-{self.epoch}-{i}")
        entry = self.entries[self.task_ids[i]]
        if not self.train:
            return self.tokens[i], self.weights[i], entry.wordings[0]
        base = entry.wordings[rng.randrange(len(entry.wordings))]
        labels = rng.random() < self.cc.p_labels
        ys = None
        if entry.example_ys.numel() and rng.random() < self.cc.p_examples:
            ys = _example_subset(entry, self.cc.n_examples, rng)
        cond = _with_channels(entry, base, labels=labels, examples=ys)
        # Drop the whole-description token only where label clauses can stand in for it: free text is never dropped.
        if rng.random() < self.cc.p_drop_global and bool(base.present[:, SEGMENT].any()):
            cond.glob = torch.zeros_like(base.glob)
        return self.tokens[i], self.weights[i], cond


def _example_subset(entry: _TaskEntry, n: int, rng: random.Random) -> torch.Tensor:
    """The pool's labels with all but a random `n` of them set to -1 (unused)."""
    pick = rng.sample(range(entry.example_ys.numel()), min(n, entry.example_ys.numel()))
    ys = torch.full_like(entry.example_ys, -1)
    ys[pick] = entry.example_ys[pick]
    return ys


def _with_channels(entry: _TaskEntry, wording: RawCondition, labels: bool,
                   examples: torch.Tensor | None) -> RawCondition:
    """`wording` with the task's label names (if `labels`) and the mean embedding per label of the pool examples
    whose entry in `examples` (labels aligned with the pool, -1 = unused) is that label."""
    slots, present = wording.slots.clone(), wording.present.clone()
    n = entry.labels.shape[0]
    if labels:
        slots[:n, LABEL], present[:n, LABEL] = entry.labels, True
    if examples is not None:
        for k in range(n):
            mask = examples == k
            if mask.any():
                slots[k, EXAMPLES], present[k, EXAMPLES] = entry.example_vecs[mask].mean(0), True
    return RawCondition(slots, present, wording.n_slots, wording.glob)


def collate(items) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
    tokens, weights, conds = zip(*items)
    return {"tokens": torch.stack(tokens), "weight": torch.stack(weights), "cond": collate_conditions(conds)}


def wordings_of(task: TaskRecord, use_paraphrases: bool) -> list[str]:
    """The description wordings training may use: the template and the in-bank paraphrases (never held-out ones)."""
    return [task.description, *task.paraphrases] if use_paraphrases else [task.description]


class HypernetDataModule(L.LightningDataModule):
    """Reads in-bank tasks and adapters from a `TaskSource` and serves training items.

    Args:
        source: the bank (wrapped in `bank.tasks.BankSource`) or any `TaskSource`.
        config: the hypernetwork config (condition options, batch size, augmentation switches).
        encode: texts -> (n, D) L2-normalised embeddings (the bank's TextEncoder.encode).
        layout: the adapter layout (default: the majority layout of the source's adapters).
        num_workers: DataLoader workers (0 is right: items are tensor lookups).
        skip_mismatched: leave out adapters of another layout than the majority's instead of refusing them.

    Raises:
        ConfigError: no in-bank task has an adapter, or adapters of several layouts without `skip_mismatched`.
    """

    def __init__(self, source: TaskSource, config: HypernetConfig, encode: TextEncode,
                 layout: AdapterLayout | None = None, num_workers: int = 0, skip_mismatched: bool = False) -> None:
        super().__init__()
        self.source, self.config, self.encode = source, config, encode
        self.tasks = training_tasks(source)
        self._adapters: dict[str, list[tuple[LoraAdapter, str]]] | None = None
        self._skipped: set[int] = set()
        if layout is None:
            self._adapters = {t.name: source.adapters(t.name) for t in self.tasks}
            layout, self._skipped = choose_layout(self._adapters, skip_mismatched)
        self.layout = layout
        self.num_workers = num_workers
        self.train_set: HypernetDataset | None = None
        self.val_set: HypernetDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        tc = self.config.train
        tasks = self.tasks
        rng = random.Random(tc.seed)
        val_names = set(t.name for t in rng.sample(tasks, int(len(tasks) * tc.val_fraction)))
        entries = self._entries(tasks)
        train, val = ([], [], [], []), ([], [], [], [])
        for ti, task in enumerate(tqdm(tasks, desc="canonical tokens", disable=len(tasks) < 20)):
            pairs = self._adapters[task.name] if self._adapters is not None else self.source.adapters(task.name)
            for adapter, kind in pairs:
                if (kind != "final" and not tc.use_checkpoints) or id(adapter) in self._skipped:
                    continue
                into = val if task.name in val_names else train
                if into is val and kind != "final":
                    continue
                into[0].append(self.layout.to_tokens(adapter))
                into[1].append(1.0 if kind == "final" else tc.checkpoint_weight)
                into[2].append(ti)
                into[3].append(kind == "final")
        if not train[0]:
            from loragen.hypernet.bank_layout import NO_ADAPTERS

            raise ConfigError(NO_ADAPTERS)
        self._adapters = None  # the tokens hold what training needs
        self.entries = entries
        self.train_finals = [i for i, final in enumerate(train[3]) if final]
        self.train_set = HypernetDataset(torch.stack(train[0]), torch.tensor(train[1]), train[2], entries,
                                         self.config, tc.seed)
        if val[0]:
            self.val_set = HypernetDataset(torch.stack(val[0]), torch.tensor(val[1]), val[2], entries,
                                           self.config, tc.seed, train=False)
        log.info("hypernet data: %d tasks, %d training adapters, %d validation", len(tasks), len(train[0]),
                 len(val[0]))

    def channels(self) -> dict[str, bool]:
        """Which optional condition channels the training set fills: "labels" (some task has label names) and
        "examples" (some task has labelled examples). A checkpoint cannot read a channel it never saw."""
        assert self.train_set is not None, "call setup() first"
        return {"labels": any(e.labels.shape[0] > 0 for e in self.entries),
                "examples": any(e.example_ys.numel() > 0 for e in self.entries)}

    def task_kinds(self) -> list[str]:
        """The kinds of the training tasks, sorted: "classification" and/or "generation"."""
        return sorted({task_kind(t) for t in self.tasks})

    def _entries(self, tasks: Sequence[TaskRecord]) -> list[_TaskEntry]:
        """Embed every task's wordings, label names and example pool (one batched encoder call per kind)."""
        cc, tc = self.config.condition, self.config.train
        parsed, owners = [], []
        for ti, task in enumerate(tasks):
            for text in wordings_of(task, tc.use_paraphrases):
                segments = {k: v for k, v in segment_description(text, cc.max_slots).items() if k < len(task.labels)}
                parsed.append(ConditionTexts(text, segments, None, None, len(task.labels)))
                owners.append(ti)
        conds = embed_conditions(parsed, self.encode, cc.max_slots, cc.text_dim, global_text=cc.global_text)
        names = [lab for t in tasks for lab in t.labels]
        label_vecs = torch.as_tensor(self.encode(names)) if names else torch.zeros(0, cc.text_dim)
        pools = [classification_pool(t, self._pool(t)) for t in tasks]
        flat = [text for pool in pools for text, _ in pool]
        ex_vecs = torch.as_tensor(self.encode(flat)) if flat else torch.zeros(0, cc.text_dim)
        entries, lab_pos, ex_pos = [], 0, 0
        for ti, task in enumerate(tasks):
            n, p = len(task.labels), len(pools[ti])
            entries.append(_TaskEntry(
                task=task,
                wordings=[c for c, o in zip(conds, owners) if o == ti],
                labels=label_vecs[lab_pos : lab_pos + n],
                example_vecs=ex_vecs[ex_pos : ex_pos + p],
                example_ys=torch.as_tensor([y for _, y in pools[ti]], dtype=torch.long),
            ))
            lab_pos, ex_pos = lab_pos + n, ex_pos + p
        return entries

    def _pool(self, task: TaskRecord) -> list[Example]:
        """The task's example pool; none for a generation task or one whose data the source cannot reach."""
        if not task.labels:
            return []
        try:
            return self.source.examples(task, self.config.condition.example_pool, self.config.train.seed)
        except TaskDataError as err:
            log.warning("task %r: no examples for the examples channel (%s)", task.name, err)
            return []

    def whitening_sample(self) -> dict[str, torch.Tensor]:
        """Conditions with every channel present (all wordings, labels, all examples per label) to fit whitening."""
        conds = []
        for entry in self.entries:
            for w in entry.wordings:
                conds.append(_with_channels(entry, w, labels=True, examples=entry.example_ys))
        return collate_conditions(conds)

    def readout_sample(self) -> dict[int, tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """Per condition pattern (hypernet.readout.PATTERNS), the conditions to fit the readout on and the index of
        each one's adapter in `train_set.tokens`: every final adapter with every training wording, with label
        names per the pattern, and with `readout_draws` random subsets of `n_examples` examples for the example
        patterns (what a request with examples looks like)."""
        from loragen.hypernet.readout import PATTERNS

        assert self.train_set is not None, "call setup() first"
        cc, mc = self.config.condition, self.config.model
        out = {}
        for p, channels in enumerate(PATTERNS):
            rng = random.Random(f"{self.config.train.seed}-readout-{p}")
            with_examples = EXAMPLES in channels
            conds, index = [], []
            for i in self.train_finals:
                entry = self.entries[self.train_set.task_ids[i]]
                if with_examples and not entry.example_ys.numel():
                    continue
                for w in entry.wordings:
                    for _ in range(mc.readout_draws if with_examples else 1):
                        ys = _example_subset(entry, cc.n_examples, rng) if with_examples else None
                        conds.append(_with_channels(entry, w, labels=LABEL in channels, examples=ys))
                        index.append(i)
            if conds:
                out[p] = (collate_conditions(conds), torch.as_tensor(index))
        return out

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        return DataLoader(self.train_set, batch_size=self.config.train.batch_size, shuffle=True,
                          collate_fn=collate, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.config.train.seed))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=self.config.train.batch_size, collate_fn=collate)


def as_numpy_encoder(encode: TextEncode) -> TextEncode:
    """Wrap `encode(list[str]) -> array` into a caching function (training embeds many texts repeatedly)."""
    cache: dict[str, np.ndarray] = {}

    def cached(texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            for t, v in zip(missing, encode(missing)):
                cache[t] = np.asarray(v, dtype=np.float32)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([cache[t] for t in texts])

    return cached
