"""The generative suite as a task provider: "smollm2-gen" in `bank.tasks.registry` (tasks for SmolLM2)."""

from __future__ import annotations

from pathlib import Path

from loragen.bank.records import TaskRecord
from loragen.bank.suite_llm.data import SUITE_NAME, task_data
from loragen.bank.suite_llm.tasks import load_suite
from loragen.bank.tasks.provider import TaskData


class SmolLM2Suite:
    """The built-in generative suite: short input -> short output tasks for SmolLM2-135M-Instruct.

    Args:
        seed: the suite seed (held-out cells, wordings, data order).

    Usage::

        suite = get_provider("smollm2-gen")
        data = suite.data(suite.tasks()[0])   # (input, output) pairs
    """

    name = SUITE_NAME
    recipe = Path(__file__).with_name("recipe.yaml")  # the oracle recipe `loragen bank build` trains with

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __repr__(self) -> str:
        return f"SmolLM2Suite(seed={self.seed})"

    def tasks(self) -> list[TaskRecord]:
        """The suite's tasks for this seed (split "train" in-bank, "heldout" held out)."""
        return load_suite(self.seed)

    def data(self, task: TaskRecord) -> TaskData:
        """The task's train/val/test (input, output) pairs (raises `TaskDataError` for another provider's task)."""
        return task_data(task)
