"""The built-in suite as a task provider: "minilm-suite" in `bank.tasks.registry`.

Everything outside `bank/suite/` reaches the suite through this class, by name (`bank.tasks.get_provider`), never
by importing the package: the generators, the oracle recipe and the harness see only the `ClassificationProvider`
interface, so a user's task manifest or another suite plugs in beside it.
"""

from __future__ import annotations

from loragen.bank.records import TaskRecord
from loragen.bank.train.classifier import SuiteClassifier
from loragen.bank.suite.data import task_data, text_styles
from loragen.bank.suite.tasks import load_suite
from loragen.bank.suite.wordings import wording_descriptions
from loragen.bank.tasks.provider import TaskData
from loragen.bank.tasks.registry import BUILTIN


class MiniLMSuite:
    """The built-in classification suite over MiniLM: >= 300 tasks from real text, scored by `SuiteClassifier`.

    Args:
        seed: the suite seed (held-out combinations, description wordings, locale pairs); the data of a task is
            rebuilt from its own `data_ref`, whatever the provider's seed.

    Usage::

        suite = get_provider("minilm-suite", seed=0)
        tasks = suite.tasks()
        data = suite.data(tasks[0])
        clf = suite.classifier(device="cpu")
    """

    name = BUILTIN

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __repr__(self) -> str:
        return f"MiniLMSuite(seed={self.seed})"

    def tasks(self) -> list[TaskRecord]:
        """The suite's tasks for this seed (split "train" in-bank, "heldout" held out)."""
        return load_suite(self.seed)

    def data(self, task: TaskRecord, text_style: str = "words") -> TaskData:
        """The task's train/val/test examples (raises `TaskDataError` for a task that is not the suite's).

        `text_style="sentences"` (evaluation only, language tasks): sentence-shaped test texts, see `text_styles`.
        """
        return task_data(task, text_style=text_style)

    def text_styles(self, task: TaskRecord) -> tuple[str, ...]:
        """The test-text styles `task` has: ("words",), or ("words", "sentences") for a language task."""
        return text_styles(task)

    def wordings(self, task: TaskRecord) -> list[str]:
        """Hand-written wordings of `task` for the heldout_wording evaluation split only (never trained on).

        Raises:
            ValueError: a task whose family has no hand-written wordings.
        """
        return wording_descriptions(task)

    def classifier(self, base_model: str | None = None, device: str | None = "cpu") -> SuiteClassifier:
        """A new `SuiteClassifier` (MiniLM + fixed label prototypes; default: the packaged all-MiniLM-L6-v2)."""
        return SuiteClassifier(base_model, device=device)
