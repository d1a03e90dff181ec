"""The built-in task suite: tasks from real text, their data, and the classifier every adapter is scored with.

Only `bank/suite/` imports this package; everything else reaches it as the task provider "minilm-suite"
(`loragen.bank.tasks.get_provider`, `bank/suite/provider.py`).

Usage (inside the suite and its tests)::

    from loragen.bank.suite import load_suite, task_data, SuiteClassifier
    specs = load_suite(seed=0)
    data = task_data(specs[0])
    clf = SuiteClassifier()
    logits = clf.logits([t for t, _ in data.test], adapter, num_labels=len(specs[0].labels))
"""

from loragen.bank.train.classifier import SuiteClassifier
from loragen.bank.suite.data import task_data
from loragen.bank.suite.provider import MiniLMSuite
from loragen.bank.suite.tasks import load_suite

__all__ = ["MiniLMSuite", "SuiteClassifier", "load_suite", "task_data"]
