"""Train one task's oracle LoRA with Lightning: the recipe every bank adapter is built with.

LoRA conventions (Hu et al., 2021, https://arxiv.org/abs/2106.09685, as in PEFT): A is Kaiming-uniform, B is zero,
ΔW = (alpha / r) · B @ A. A is drawn from a *fixed* seed (`TrainConfig.init_seed`) for every task, so bank adapters
share their starting point and are comparable factor by factor. The factors are plain `nn.Parameter`s applied with
`bank.lora.functional.lora_applied`; the base model is never modified.

The recipe is the same for every classification provider: the task's provider (`bank.tasks`) gives its training
examples and the classifier (a frozen base model with a task-free head) the loss runs through.

Usage::

    from loragen.bank.tasks import get_provider
    from loragen.bank.train import TrainConfig, train_task_adapter
    result = train_task_adapter(get_provider().tasks()[0], TrainConfig(steps=24))
    result.final, result.checkpoints, result.metrics
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Classifier, TaskData, classifier_for, task_data

DEFAULT_TARGETS = ("query", "key", "value")  # BERT-style attention projections (MiniLM, the built-in suite)


@dataclass
class TrainConfig:
    """How one task's oracle LoRA is trained.

    Attributes:
        r: LoRA rank.
        lora_alpha: LoRA alpha (scaling = alpha / r).
        target_modules: short names of the linear layers to adapt (BERT/MiniLM attention projections by
            default).
        steps: most optimiser steps.
        min_steps: steps always taken before early stopping may end training.
        stop_loss: stop once the running mean of the training loss falls below this (0 disables early stopping):
            easy pairs converge in a dozen steps, close languages use the whole budget.
        lr: AdamW learning rate.
        batch_size: examples per step (sampled with replacement).
        seed: seed of the batch order.
        init_seed: seed of the A initialisation; keep it fixed so bank adapters are comparable.
        num_checkpoints: trajectory checkpoints kept besides the final adapter (evenly spaced over the steps run).
        weight_decay: AdamW weight decay.
    """

    r: int = 4
    lora_alpha: float = 8.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    steps: int = 40
    min_steps: int = 8
    stop_loss: float = 0.03
    lr: float = 1e-2
    batch_size: int = 16
    seed: int = 0
    init_seed: int = 0
    num_checkpoints: int = 3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        checks = {
            "r": self.r >= 1,
            "lora_alpha": self.lora_alpha > 0,
            "target_modules": len(self.target_modules) > 0,
            "steps": self.steps >= 1,
            "min_steps": 1 <= self.min_steps <= self.steps,
            "stop_loss": self.stop_loss >= 0,
            "lr": 0 < self.lr < 1,
            "batch_size": self.batch_size >= 1,
            "num_checkpoints": 0 <= self.num_checkpoints < self.min_steps,
            "weight_decay": self.weight_decay >= 0,
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid TrainConfig: {', '.join(bad)} (need r >= 1, alpha > 0, non-empty targets, "
                             "1 <= min_steps <= steps, stop_loss >= 0, 0 < lr < 1, batch_size >= 1, "
                             "0 <= num_checkpoints < min_steps, decay >= 0)")

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def checkpoint_steps(self, steps_run: int) -> list[int]:
        """Steps whose adapters are kept as trajectory checkpoints: evenly spaced, the final step excluded."""
        n = self.num_checkpoints
        return sorted({max(1, round(steps_run * (i + 1) / (n + 1))) for i in range(n)} - {steps_run})


@dataclass
class TrainResult:
    """A trained task adapter: the final one, its trajectory checkpoints (oldest first) and metrics."""

    final: LoraAdapter
    checkpoints: list[LoraAdapter] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def target_module_paths(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Full paths of the linear layers whose last name is in `targets`, sorted.

    Raises:
        ValueError: no linear layer matches.
    """
    paths = sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets)
    if not paths:
        raise ValueError(f"no linear layer of {type(model).__name__} is named one of {list(targets)}")
    return paths


class LoraTaskModule(pl.LightningModule):
    """LoRA factors as parameters, trained through a provider's classifier (its head is fixed, task-free).

    Batches carry each example's label count, so tasks with 2 and 3 labels can be mixed (multi-task baseline):
    slots beyond an example's labels are masked out of its softmax.
    """

    def __init__(self, classifier: Classifier, config: TrainConfig, num_labels: int) -> None:
        super().__init__()
        self.classifier, self.config, self.num_labels = classifier, config, num_labels
        named = dict(classifier.model.named_modules())
        self.paths = target_module_paths(classifier.model, config.target_modules)
        gen = torch.Generator().manual_seed(config.init_seed)
        a_list, b_list = [], []
        for path in self.paths:
            lin = named[path]
            a = torch.empty(config.r, lin.in_features)  # (r, in)
            bound = 1.0 / math.sqrt(lin.in_features)  # kaiming_uniform_(a=sqrt(5)) bound, as nn.Linear and PEFT
            a.uniform_(-bound, bound, generator=gen)
            a_list.append(nn.Parameter(a))
            b_list.append(nn.Parameter(torch.zeros(lin.out_features, config.r)))  # (out, r): ΔW starts at 0
        self.lora_A, self.lora_B = nn.ParameterList(a_list), nn.ParameterList(b_list)
        self.snapshots: dict[int, LoraAdapter] = {}  # step -> adapter after that step (small: rank-r factors)
        self.running_loss = float("nan")

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {p: (a, b) for p, a, b in zip(self.paths, self.lora_A, self.lora_B)}

    def training_step(self, batch: tuple[list[str], torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        texts, labels, n_labels = batch  # n_labels: (n,) label count of each example's task
        logits = self.classifier.logits_from_factors(texts, self.factors(), self.config.scaling, self.num_labels)
        slots = torch.arange(self.num_labels, device=logits.device)
        logits = logits.masked_fill(slots[None, :] >= n_labels.to(logits.device)[:, None], float("-inf"))
        loss = F.cross_entropy(logits, labels.to(logits.device))
        value = float(loss.detach())
        self.running_loss = value if math.isnan(self.running_loss) else 0.7 * self.running_loss + 0.3 * value
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        self.snapshots[step] = self.to_adapter(step=step)
        if step >= self.config.min_steps and self.running_loss < self.config.stop_loss:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def to_adapter(self, **metadata: Any) -> LoraAdapter:
        """The current factors as a detached CPU `LoraAdapter`."""
        return LoraAdapter(
            base_model=self.classifier.base_model_id,
            r=self.config.r,
            lora_alpha=self.config.lora_alpha,
            lora_A={p: a.detach().cpu().clone() for p, a in zip(self.paths, self.lora_A)},
            lora_B={p: b.detach().cpu().clone() for p, b in zip(self.paths, self.lora_B)},
            target_modules=list(self.config.target_modules),
            metadata=dict(metadata),
        )


_Item = tuple[str, int, int]  # (text, label, number of labels of its task)


def _collate(batch: list[_Item]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    return [t for t, _, _ in batch], torch.tensor([y for _, y, _ in batch]), torch.tensor([n for _, _, n in batch])


def _loader(examples: list[_Item], config: TrainConfig) -> DataLoader:
    gen = torch.Generator().manual_seed(config.seed)
    sampler = RandomSampler(examples, replacement=True, num_samples=config.steps * config.batch_size, generator=gen)
    return DataLoader(examples, batch_size=config.batch_size, sampler=sampler, collate_fn=_collate)


def _quiet_lightning() -> None:
    # One Trainer per task: its banner lines ("GPU available: ...") would drown the build's progress bar.
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def train_task_adapter(spec: TaskRecord, config: TrainConfig | None = None, classifier: Classifier | None = None,
                       data: TaskData | None = None) -> TrainResult:
    """Train `spec`'s oracle LoRA and return the final adapter, its checkpoints and metrics.

    Args:
        spec: the task (its labels set the number of prototype slots used).
        config: the recipe (default `TrainConfig()`).
        classifier: a shared classifier (default: a new one from the task's provider; loading the base model once
            saves seconds per task).
        data: the task's examples (default: `bank.tasks.task_data(spec)`, from the task's provider).

    Returns:
        `TrainResult` whose adapters carry metadata task, description, kind ("final"/"checkpoint") and step;
        metrics hold train_loss (running mean), steps, train_seconds and the config.
    """
    data = data or task_data(spec)
    n = len(spec.labels)
    return _fit([(t, y, n) for t, y in data.train], config or TrainConfig(), classifier or classifier_for(spec),
                {"task": spec.name, "description": spec.description})


def train_multitask_adapter(specs: Sequence[TaskRecord], config: TrainConfig | None = None,
                            classifier: Classifier | None = None, per_task: int = 64) -> TrainResult:
    """Train one LoRA on the pooled training data of `specs` (the multi-task baseline).

    It sees every task's examples but no description, so it cannot tell a pair from its reverse: it measures how
    much of a task family is solvable without reading the task.

    Args:
        specs: the tasks (their first `per_task` training examples are pooled).
        config: the recipe (default `TrainConfig(steps=300, batch_size=32)` without early stopping).
        classifier: a shared classifier (default: a new one from the first task's provider).
        per_task: training examples taken from each task.
    """
    if not specs:
        raise ValueError("train_multitask_adapter needs at least one task")
    examples = [(t, y, len(s.labels)) for s in specs for t, y in task_data(s).train[:per_task]]
    config = config or TrainConfig(steps=300, min_steps=300, batch_size=32, stop_loss=0.0)
    meta = {"task": "multitask", "description": f"multi-task LoRA over {len(specs)} tasks"}
    return _fit(examples, config, classifier or classifier_for(specs[0]), meta)


def _fit(examples: list[_Item], config: TrainConfig, classifier: Classifier,
         meta: dict[str, Any]) -> TrainResult:
    _quiet_lightning()
    module = LoraTaskModule(classifier, config, num_labels=max(n for _, _, n in examples))
    trainer = pl.Trainer(max_steps=config.steps, accelerator=classifier.device.type, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=_loader(examples, config))
    seconds = time.perf_counter() - start
    steps_run = max(module.snapshots)
    final = module.snapshots[steps_run].with_metadata(**meta, kind="final")
    checkpoints = [module.snapshots[s].with_metadata(**meta, kind="checkpoint")
                   for s in config.checkpoint_steps(steps_run)]
    metrics = {"train_loss": module.running_loss, "steps": steps_run, "train_seconds": seconds,
               "config": {**asdict(config), "target_modules": list(config.target_modules)}}
    return TrainResult(final=final, checkpoints=checkpoints, metrics=metrics)
