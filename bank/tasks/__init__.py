"""Tasks and their data, through one interface: providers by name, dispatch on a task's `data_ref`, training sources.

Generators, the oracle recipe, the harness and the service read tasks and examples only through this package; the
built-in MiniLM suite (`bank/suite/`) is the provider "minilm-suite" behind it, and a user's task manifest or
another suite plugs in as one more provider (`register_provider`).

Usage::

    from loragen.bank.tasks import BUILTIN, BankSource, get_provider, task_data, training_examples
    suite = get_provider(BUILTIN)              # the built-in suite (seed 0)
    task = suite.tasks()[0]
    data = task_data(task)                     # TaskData(train, val, test) from the task's own provider
    clf = suite.classifier()                   # the model its adapters are scored with
"""

from loragen.bank.tasks.oracle_cache import OracleCache, task_dir
from loragen.bank.tasks.provider import ClassificationProvider, Classifier, Example, TaskData, TaskProvider
from loragen.bank.tasks.registry import (
    BUILTIN,
    GENERATIVE,
    STORED,
    PROVIDERS,
    classification_provider,
    classifier_for,
    few_shot_examples,
    get_provider,
    provider_for,
    provider_name,
    register_provider,
    task_data,
    training_examples,
)
from loragen.bank.tasks.sources import ADAPTER_KINDS, BankSource, MemorySource, OracleCacheSource, TaskSource

__all__ = [
    "ADAPTER_KINDS", "BUILTIN", "GENERATIVE", "BankSource", "ClassificationProvider", "Classifier", "Example", "MemorySource",
    "OracleCache", "OracleCacheSource", "PROVIDERS", "STORED", "TaskData", "TaskProvider", "TaskSource",
    "classification_provider", "classifier_for", "few_shot_examples", "get_provider", "provider_for",
    "provider_name", "register_provider", "task_data", "task_dir", "training_examples",
]
