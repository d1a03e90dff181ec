"""Task providers by name, and the dispatch from a task record to the provider that owns its data.

Providers are named here as ``"module:factory"`` strings and imported on first use (like the CLI's command table),
so reading this registry never loads a suite. A task names its provider in its `data_ref`:
``{"provider": "minilm-suite", ...}``; suite tasks stored before providers had names carry
``{"suite": "builtin", ...}`` and dispatch to "minilm-suite". A task whose `data_ref` names no provider has no data
loragen can rebuild: `training_examples` gives none for it and `task_data` raises `TaskDataError` naming it; nothing
falls back to the built-in suite.

Usage::

    from loragen.bank.tasks import BUILTIN, get_provider, provider_for, task_data
    tasks = get_provider(BUILTIN, seed=0).tasks()
    data = task_data(tasks[0])               # == provider_for(tasks[0]).data(tasks[0])
"""

from __future__ import annotations

import importlib
import random
from typing import Any

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks.provider import ClassificationProvider, Classifier, Example, TaskData, TaskProvider

BUILTIN = "minilm-suite"  # the built-in classification suite over MiniLM (bank/suite/)
STORED = "bank"  # a user's task whose examples are stored in the bank that holds it (`Bank.task_data`)

GENERATIVE = "smollm2-gen"  # the built-in generative suite over SmolLM2 (bank/suite_llm/)

PROVIDERS: dict[str, str] = {
    BUILTIN: "loragen.bank.suite.provider:MiniLMSuite",
    GENERATIVE: "loragen.bank.suite_llm.provider:SmolLM2Suite",
}

_instances: dict[tuple[str, tuple[tuple[str, Any], ...]], TaskProvider] = {}


def register_provider(name: str, factory: str) -> None:
    """Make a provider available by `name`; `factory` is ``"module:callable"``, imported on first use.

    Raises:
        TaskDataError: a malformed factory string, or `name` already taken by another factory.
    """
    if ":" not in factory:
        raise TaskDataError(f"provider factory {factory!r} must read 'package.module:callable'")
    if PROVIDERS.get(name, factory) != factory:
        raise TaskDataError(f"task provider {name!r} is already registered as {PROVIDERS[name]!r}")
    PROVIDERS[name] = factory


def get_provider(name: str = BUILTIN, **options: Any) -> TaskProvider:
    """The provider called `name`, built with `options` (one instance per name and options).

    Args:
        name: a registered provider name (see `PROVIDERS`).
        options: the provider's own options (the built-in suite takes `seed`).

    Raises:
        TaskDataError: an unknown provider name.
    """
    if name not in PROVIDERS:
        raise TaskDataError(f"unknown task provider {name!r}; known providers: {sorted(PROVIDERS)}")
    key = (name, tuple(sorted(options.items())))
    if key not in _instances:
        module, _, attr = PROVIDERS[name].partition(":")
        _instances[key] = getattr(importlib.import_module(module), attr)(**options)
    return _instances[key]


def provider_name(task: TaskRecord) -> str | None:
    """The name of the provider that owns `task`'s data, from its `data_ref` (None: it names none)."""
    ref = task.data_ref or {}
    if "provider" in ref:
        return str(ref["provider"])
    if ref.get("suite") == "builtin":  # suite tasks from before providers had names
        return BUILTIN
    if ref.get("suite") == GENERATIVE:
        return GENERATIVE
    return None


def provider_for(task: TaskRecord) -> TaskProvider:
    """The provider that owns `task`'s data.

    Raises:
        TaskDataError: the task's `data_ref` names no provider, or an unknown one (the message names the task).
    """
    name = provider_name(task)
    if name == STORED:
        raise TaskDataError(
            f"task {task.name!r} keeps its examples in the bank that holds it: read them through that bank "
            "(`BankSource(bank).data(task)` or `Bank.task_data`)")
    if name is None:
        raise TaskDataError(
            f"task {task.name!r} has no data loragen can rebuild: its data_ref {task.data_ref} names no task "
            f"provider (known: {sorted(PROVIDERS)}); pass its examples yourself")
    if name not in PROVIDERS:
        raise TaskDataError(f"task {task.name!r} names task provider {name!r}, which is not registered; known "
                            f"providers: {sorted(PROVIDERS)}")
    return get_provider(name)


def classification_provider(task: TaskRecord) -> ClassificationProvider:
    """`provider_for(task)`, checked to be a classification provider (one with a classifier).

    Raises:
        TaskDataError: as `provider_for`, or the provider scores no classifier.
    """
    provider = provider_for(task)
    if not isinstance(provider, ClassificationProvider):
        raise TaskDataError(f"task {task.name!r} comes from provider {provider.name!r}, which has no classifier to "
                            "train or score adapters with")
    return provider


def classifier_for(task: TaskRecord, **options: Any) -> Classifier:
    """A new classifier of the provider that owns `task` (options as `ClassificationProvider.classifier`)."""
    return classification_provider(task).classifier(**options)


def task_data(task: TaskRecord) -> TaskData:
    """`task`'s examples, from the provider that owns it.

    Raises:
        TaskDataError: no provider owns the task (see `provider_for`), or it cannot rebuild the task's data.
    """
    return provider_for(task).data(task)


def training_examples(task: TaskRecord, n: int, seed: int) -> list[Example]:
    """Up to `n` examples drawn (with `seed`) from `task`'s *training* split, never its test split.

    A task whose `data_ref` names no provider has no examples: [] (generators then train on its description
    alone). A task naming an unknown provider is a mistake and raises `TaskDataError`.
    """
    if provider_name(task) is None:
        return []
    train = task_data(task).train
    return random.Random(seed).sample(list(train), min(n, len(train)))


def few_shot_examples(task: TaskRecord, n: int = 8, seed: int = 0) -> tuple[Example, ...]:
    """`n` labelled examples from `task`'s *training* split, labels taken round-robin so every label appears
    (what a user who gives "a few examples" gives; never test data).

    Raises:
        TaskDataError: as `task_data`, or a label with fewer than its share of the `n` training examples.
    """
    train = list(task_data(task).train)
    random.Random(seed).shuffle(train)
    by_label = {k: [e for e in train if e[1] == k] for k in range(len(task.labels))}
    short = [k for k, pool in by_label.items() if len(pool) < len(range(k, n, len(by_label)))]
    if short:
        raise TaskDataError(f"task {task.name!r} has too few training examples of labels {short} for {n} "
                            "round-robin few-shot examples")
    return tuple(by_label[i % len(by_label)][i // len(by_label)] for i in range(n))
