"""Train one classification task's oracle LoRA with Lightning: the recipe every classification adapter is built with.

The recipe is the same for every classification provider: the task's examples (from its provider, or given) and
the classifier (a frozen base model with a task-free head, e.g. `PrototypeClassifier`) the loss runs through.
The LoRA parameters, snapshots, early stopping and the fit are shared with the causal-LM recipe
(`bank.train.lora_module`); A is drawn from a fixed seed, B starts at zero.

Usage::

    from loragen.bank.tasks import get_provider
    from loragen.bank.train import TrainConfig, train_task_adapter
    result = train_task_adapter(get_provider().tasks()[0], TrainConfig(steps=24))
    result.final, result.checkpoints, result.metrics
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Classifier, TaskData, classifier_for, task_data
from loragen.bank.train.config import DEFAULT_TARGETS, TrainConfig, TrainResult
from loragen.bank.train.lora_module import LoraModule, fit_lora, sampled_loader, target_module_paths

__all__ = ["DEFAULT_TARGETS", "LoraTaskModule", "TrainConfig", "TrainResult", "target_module_paths",
           "train_multitask_adapter", "train_task_adapter"]


class LoraTaskModule(LoraModule):
    """LoRA factors as parameters, trained through a provider's classifier (its head is fixed, task-free).

    Batches carry each example's label count, so tasks with 2 and 3 labels can be mixed (multi-task baseline):
    slots beyond an example's labels are masked out of its softmax.
    """

    def __init__(self, classifier: Classifier, config: TrainConfig, num_labels: int) -> None:
        super().__init__(classifier.model, classifier.base_model_id, config)
        self.classifier, self.num_labels = classifier, num_labels

    def training_step(self, batch: tuple[list[str], torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        texts, labels, n_labels = batch  # n_labels: (n,) label count of each example's task
        logits = self.classifier.logits_from_factors(texts, self.factors(), self.config.scaling, self.num_labels)
        slots = torch.arange(self.num_labels, device=logits.device)
        logits = logits.masked_fill(slots[None, :] >= n_labels.to(logits.device)[:, None], float("-inf"))
        return self.track_loss(F.cross_entropy(logits, labels.to(logits.device)))


_Item = tuple[str, int, int]  # (text, label, number of labels of its task)


def _collate(batch: list[_Item]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    return [t for t, _, _ in batch], torch.tensor([y for _, y, _ in batch]), torch.tensor([n for _, _, n in batch])


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
         meta: dict) -> TrainResult:
    module = LoraTaskModule(classifier, config, num_labels=max(n for _, _, n in examples))
    return fit_lora(module, sampled_loader(examples, config, _collate), classifier.device, meta)
