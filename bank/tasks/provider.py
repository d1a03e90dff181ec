"""The provider interface: what a source of tasks gives the generators, the oracle recipe and the harness.

A *task provider* owns a family of tasks: it lists them (`TaskRecord`s) and rebuilds any of its tasks' examples
(`TaskData`) from the task's `data_ref`. A *classification* provider also gives the model its tasks are scored
with (`Classifier`): a frozen base model whose head carries no task information, so the adapter alone defines
the task. The built-in MiniLM suite (`bank/suite/`) is one provider; a user's task manifest or a causal-LM suite
is another, registered by name in `bank.tasks.registry` and never imported by the generators.

Usage::

    from loragen.bank.tasks import get_provider, task_data
    suite = get_provider("minilm-suite")
    task = suite.tasks()[0]
    data = task_data(task)                     # dispatched on task.data_ref, whichever provider owns it
    clf = suite.classifier()
    accuracy = clf.accuracy(data.test, adapter, num_labels=len(task.labels))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from loragen.bank.records import TaskRecord

if TYPE_CHECKING:
    import torch
    from torch import nn

    from loragen.bank.lora.adapter import LoraAdapter

Example = tuple[str, int]  # (text, label index) for classification; generation pairs are (input, output) strings
Factors = Mapping[str, tuple["torch.Tensor", "torch.Tensor"]]  # module path -> (A (r, in), B (out, r))


@dataclass(frozen=True)
class TaskData:
    """A task's examples, split three ways (no text in two splits): (text, label index) pairs for a classification
    task, (input, output) string pairs for a generation task.

    Attributes:
        train: what oracles and generators may learn from (and what few-shot examples are drawn from).
        val: held back from training; calibration and probing use it.
        test: what adapters are scored on.
    """

    train: list[Example]
    val: list[Example]
    test: list[Example]


@runtime_checkable
class Classifier(Protocol):
    """The model a classification provider's adapters are trained and scored with (LoRA applied on the fly).

    Attributes:
        model: the frozen base model the adapters' module paths refer to.
        base_model_id: its canonical id (recorded in every adapter trained or generated for it).
        device: where it runs.
    """

    model: nn.Module
    base_model_id: str
    device: torch.device

    def logits_from_factors(self, texts: Sequence[str] | Mapping[str, torch.Tensor], factors: Factors | None,
                            scaling: float = 1.0, num_labels: int = 2) -> torch.Tensor:
        """(n, num_labels) logits with raw LoRA factors applied, differentiable in the factors."""
        ...

    def logits(self, texts: Sequence[str], adapter: LoraAdapter | None = None, num_labels: int = 2,
               batch_size: int = 256) -> torch.Tensor:
        """(n, num_labels) logits with `adapter` applied (None: the base model), without gradients."""
        ...

    def accuracy(self, examples: Sequence[Example], adapter: LoraAdapter | None = None,
                 num_labels: int = 2) -> float:
        """Share of (text, label) examples whose highest logit is the label."""
        ...


@runtime_checkable
class TaskProvider(Protocol):
    """A source of tasks and their data.

    Attributes:
        name: the provider's registry name; its tasks' `data_ref["provider"]` (see `bank.tasks.registry`).
    """

    name: str

    def tasks(self) -> list[TaskRecord]:
        """Every task the provider offers (in-bank ones with split "train", held-out ones with "heldout")."""
        ...

    def data(self, task: TaskRecord) -> TaskData:
        """The task's examples, rebuilt from its `data_ref`.

        Raises:
            TaskDataError: the task is not one of this provider's, or its `data_ref` is incomplete.
        """
        ...


@runtime_checkable
class ClassificationProvider(TaskProvider, Protocol):
    """A provider of classification tasks, with the classifier every adapter of its tasks is scored with."""

    def classifier(self, base_model: str | None = None, device: str | None = "cpu") -> Classifier:
        """A new classifier (loading it takes seconds: share one).

        Args:
            base_model: base model name or local path (default: the provider's own).
            device: "cpu", "cuda", "auto" or None (auto).
        """
        ...
