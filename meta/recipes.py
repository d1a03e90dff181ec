"""Builders and the end-to-end recipe: ABMLL on the built-in suite (optionally warm-started from bank adapters)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from loragen.bank.records import TaskRecord
from loragen.meta.config import ABMLLConfig, MetaConfig
from loragen.meta.guide import ABMLLGuide
from loragen.meta.model import ABMLLModel, FactorClassifier, LoraLayout, weight_floor
from loragen.meta.train import save_checkpoint, train

log = logging.getLogger(__name__)


def build_abmll(classifier: FactorClassifier, config: ABMLLConfig, base_model: str,
                seed: int = 0) -> tuple[ABMLLModel, ABMLLGuide]:
    """A fresh ABMLL model and guide for `classifier.model` (the layout and the floor c come from its weights)."""
    layout = LoraLayout.from_model(classifier.model, config, base_model)
    floor = weight_floor(classifier.model, layout, config.scale_floor)
    model = ABMLLModel(layout, floor, classifier, config)
    return model, ABMLLGuide(model, seed=seed)


def fit_suite(output: str | Path, config: MetaConfig, *, bank=None, oracle_dir: str | Path | None = None,
              tasks: Sequence[TaskRecord] | None = None, max_tasks: int | None = None,
              progress: bool = True) -> tuple[ABMLLModel, ABMLLGuide, dict]:
    """Train ABMLL on the suite's in-bank tasks and write a checkpoint to `output`.

    Args:
        output: checkpoint directory. config: model/train/generate configs.
        bank: an open bank: its tasks (in-bank split) and final adapters (warm start) are used.
        oracle_dir: a directory of PEFT oracles with tasks.json (used when no bank is given).
        tasks: tasks to train on (default: the bank's in-bank tasks, else the built-in suite's).
        max_tasks: train on at most this many tasks (evenly spread; for quick runs).

    Returns:
        (model, guide, history).
    """
    from loragen.bank.embed import TextEncoder
    from loragen.bank.suite import SuiteClassifier, load_suite
    from loragen.meta.condition import SlotDescriptionEncoder
    from loragen.meta.data import bank_adapters, cache_adapters, meta_tasks, suite_examples

    if tasks is None:
        tasks = bank.tasks(split="train") if bank is not None else []
        tasks = tasks or [t for t in load_suite(seed=0) if t.split == "train"]
    tasks = [t for t in tasks if t.split == "train"]
    if max_tasks and len(tasks) > max_tasks:
        step = len(tasks) / max_tasks
        tasks = [tasks[int(i * step)] for i in range(max_tasks)]
    torch.manual_seed(config.train.seed)
    classifier = SuiteClassifier()
    model, guide = build_abmll(classifier, config.model, classifier.base_model_id, seed=config.train.seed)
    adapters = {}
    if bank is not None:
        adapters = bank_adapters(bank, tasks)
    elif oracle_dir is not None:
        adapters = cache_adapters(oracle_dir, tasks)
    adapters = {k: a for k, a in adapters.items() if tuple(a.modules) == model.layout.modules and a.r == config.model.r}
    log.info("ABMLL: %d tasks, %d with a known adapter for the warm start", len(tasks), len(adapters))
    encoder = TextEncoder()
    slots = SlotDescriptionEncoder(encoder.encode, config.model.max_slots)
    train_tasks = meta_tasks(tasks, slots, suite_examples(), model.layout, adapters)
    history = train(model, guide, train_tasks, config.train, progress=progress)
    extra = {"tasks": [t.name for t in tasks], "warm_start_tasks": len(adapters), "encoder": encoder.name,
             "elbo": history["elbo"], "warm_start_mse": history["warm_start_mse"][-1:] or None,
             "seconds": history["seconds"]}
    save_checkpoint(output, model, guide, config, extra)
    return model, guide, history
