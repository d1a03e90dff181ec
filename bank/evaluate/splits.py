"""The evaluation splits, defined once: which tasks a split scores, and with which wordings a generator is asked.

    in_bank              tasks with split "train" (generators may learn from them), with their own description;
    heldout_task         tasks with split "heldout": never seen in training (for the built-in suite, label
                         combinations none of whose orders is in the bank);
    heldout_paraphrase   in-bank tasks asked with a held-out wording (`TaskRecord.heldout_paraphrases`, never used
                         in any training text);
    heldout_wording      every task (in-bank and held-out) whose provider has hand-written, human-style wordings
                         (`WordingProvider.wordings`: questions, "the answer is 1 when ...", the classes named in the
                         opposite order to their labels, ...), asked with each of them. They are not part of the
                         task record, so no generator trains on them. Opt-in (`ALL_SPLITS`): it costs about as much
                         as the other three together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from loragen.bank.records import TaskRecord
from loragen.bank.tasks import PROVIDERS, get_provider, provider_name

EvalSplit = Literal["in_bank", "heldout_task", "heldout_paraphrase", "heldout_wording"]
EVAL_SPLITS: tuple[EvalSplit, ...] = ("in_bank", "heldout_task", "heldout_paraphrase")  # the default splits
ALL_SPLITS: tuple[EvalSplit, ...] = (*EVAL_SPLITS, "heldout_wording")


@runtime_checkable
class WordingProvider(Protocol):
    """A task provider with hand-written evaluation wordings of its tasks (the built-in MiniLM suite)."""

    def wordings(self, task: TaskRecord) -> list[str]:
        """Wordings of `task` that no training text uses, each stating every label's index."""
        ...


def wording_provider(task: TaskRecord) -> WordingProvider | None:
    """The provider of `task` if it has evaluation wordings for it, else None (a task of no or another provider)."""
    name = provider_name(task)
    if name not in PROVIDERS:
        return None
    provider = get_provider(name)
    if not isinstance(provider, WordingProvider):
        return None
    try:
        provider.wordings(task)
    except ValueError:  # a family without wordings
        return None
    return provider


def eval_descriptions(task: TaskRecord, split: EvalSplit) -> list[str]:
    """The wordings a generator is asked with for `task` in evaluation split `split`.

    in_bank and heldout_task use the task's own description; heldout_paraphrase uses its held-out wordings;
    heldout_wording its provider's hand-written wordings.

    Raises:
        ValueError: the task does not belong to the split.
    """
    if split == "heldout_wording":
        provider = wording_provider(task)
        if provider is None:
            raise ValueError(f"task {task.name} has no hand-written wordings (its provider "
                             f"{provider_name(task)!r} offers none for family {task.family!r})")
        return provider.wordings(task)
    if split == "heldout_task":
        if task.split != "heldout":
            raise ValueError(f"task {task.name} is in the bank (split {task.split!r}), not a held-out task")
        return [task.description]
    if task.split != "train":
        raise ValueError(f"task {task.name} is held out; split {split!r} covers only in-bank tasks")
    return [task.description] if split == "in_bank" else list(task.heldout_paraphrases)


def split_tasks(tasks: Sequence[TaskRecord], split: EvalSplit) -> list[TaskRecord]:
    """The tasks evaluated in `split`.

    Raises:
        ValueError: an unknown split name.
    """
    if split not in ALL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; choose one of {ALL_SPLITS}")
    if split == "heldout_wording":
        return [t for t in tasks if wording_provider(t) is not None]
    wanted = "heldout" if split == "heldout_task" else "train"
    return [t for t in tasks if t.split == wanted]
