"""Oracle recipes: train one task's LoRA (and the multi-task baseline) through its provider's classifier, and
build tasks' oracles into a bank (trained, or imported from an oracle cache), resumably.

Usage::

    from loragen.bank.train import TrainConfig, build_bank, train_task_adapter, trained_oracles
    result = train_task_adapter(task, TrainConfig(steps=24))
    with Bank.open(path) as bank:
        build_bank(bank, tasks, oracle=trained_oracles(TrainConfig(r=8)))
"""

from loragen.bank.train.build import (
    BuildSummary,
    OracleSource,
    build_bank,
    build_task,
    imported_oracles,
    trained_oracles,
)
from loragen.bank.train.classifier import PrototypeClassifier
from loragen.bank.train.oracle import (
    DEFAULT_TARGETS,
    LoraTaskModule,
    TrainConfig,
    TrainResult,
    train_multitask_adapter,
    train_task_adapter,
)

__all__ = [
    "DEFAULT_TARGETS", "BuildSummary", "LoraTaskModule", "OracleSource", "PrototypeClassifier", "TrainConfig", "TrainResult", "build_bank",
    "build_task", "imported_oracles", "train_multitask_adapter", "train_task_adapter", "trained_oracles",
]
