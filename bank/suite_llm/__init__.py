"""The built-in generative task suite for SmolLM2-135M-Instruct: short input -> short output tasks from real data.

Usage::

    from loragen.bank.suite_llm import load_suite, task_data
    tasks = load_suite(seed=0)
    data = task_data(tasks[0])  # data.train / data.val / data.test: lists of (input, output)

Score adapters with `loragen.bank.causal_lm` (prompt format, greedy `complete`, `exact_match`).
"""

from loragen.bank.suite_llm.data import SUITE_NAME, few_shot_examples, task_data
from loragen.bank.suite_llm.provider import SmolLM2Suite
from loragen.bank.suite_llm.tasks import (
    BASE_MODEL, EVAL_SPLITS, eval_descriptions, load_suite, split_tasks, training_texts,
)

__all__ = [
    "BASE_MODEL", "EVAL_SPLITS", "SUITE_NAME", "SmolLM2Suite", "eval_descriptions", "few_shot_examples", "load_suite",
    "split_tasks", "task_data", "training_texts",
]
