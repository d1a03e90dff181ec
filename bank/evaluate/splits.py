"""The evaluation splits, defined once: which tasks a split scores, and with which wordings a generator is asked.

    in_bank              tasks with split "train" (generators may learn from them), with their own description;
    heldout_task         tasks with split "heldout": never seen in training (for the built-in suite, label
                         combinations none of whose orders is in the bank);
    heldout_paraphrase   in-bank tasks asked with a held-out wording (`TaskRecord.heldout_paraphrases`, never used
                         in any training text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from loragen.bank.records import TaskRecord

EvalSplit = Literal["in_bank", "heldout_task", "heldout_paraphrase"]
EVAL_SPLITS: tuple[EvalSplit, ...] = ("in_bank", "heldout_task", "heldout_paraphrase")


def eval_descriptions(task: TaskRecord, split: EvalSplit) -> list[str]:
    """The wordings a generator is asked with for `task` in evaluation split `split`.

    in_bank and heldout_task use the task's own description; heldout_paraphrase uses its held-out wordings.

    Raises:
        ValueError: the task does not belong to the split.
    """
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
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown evaluation split {split!r}; choose one of {EVAL_SPLITS}")
    wanted = "heldout" if split == "heldout_task" else "train"
    return [t for t in tasks if t.split == wanted]
