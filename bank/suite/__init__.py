"""The built-in task suite: tasks from real text, their data, and the classifier every adapter is scored with.

Usage::

    from loragen.bank.suite import load_suite, task_data, SuiteClassifier
    specs = load_suite(seed=0)
    data = task_data(specs[0])
    clf = SuiteClassifier()
    logits = clf.logits([t for t, _ in data.test], adapter, num_labels=len(specs[0].labels))
"""

from loragen.bank.suite.classifier import SuiteClassifier
from loragen.bank.suite.data import TaskData, few_shot_examples, task_data
from loragen.bank.suite.tasks import EVAL_SPLITS, eval_descriptions, load_suite, split_tasks

__all__ = [
    "EVAL_SPLITS", "SuiteClassifier", "TaskData", "eval_descriptions", "few_shot_examples", "load_suite", "split_tasks",
    "task_data",
]
