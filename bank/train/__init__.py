"""Oracle recipes: train one task's LoRA (classification through a classifier, generation on a causal LM; the
multi-task baseline too), build tasks' oracles into a bank (trained, or imported from an oracle cache), and train
the bank's own tasks (imported from a manifest) over their base models, resumably.

Modules: `config` (TrainConfig, recipe files), `lora_module` (what every recipe shares: target layers, LoRA
parameters, snapshots, early stopping, the Lightning fit), `oracle` (classification), `causal` (generation),
`build` (suite tasks into a bank), `stored` (a bank's own tasks: import it as `loragen.bank.train.stored`; it
reads task manifests' conventions, which themselves use the classifier), `classifier` (the prototype classifier).

Usage::

    from loragen.bank.train import TrainConfig, build_bank, train_task_adapter, trained_oracles
    result = train_task_adapter(task, TrainConfig(steps=24))
    with Bank.open(path) as bank:
        build_bank(bank, tasks, oracle=trained_oracles(TrainConfig(r=8)))

    from loragen.bank.train.stored import train_stored_tasks
    with Bank.open(path) as bank:
        train_stored_tasks(bank, base_model="./my-encoder")
"""

from loragen.bank.train.build import (
    BuildSummary,
    OracleSource,
    build_bank,
    build_task,
    imported_oracles,
    store_result,
    trained_oracles,
)
from loragen.bank.train.causal import CausalLM, CausalLoraModule, train_causal_adapter
from loragen.bank.train.classifier import PrototypeClassifier
from loragen.bank.train.config import DEFAULT_TARGETS, TrainConfig, TrainResult, cap_steps, load_recipe
from loragen.bank.train.lora_module import LoraModule, attention_targets, target_module_paths
from loragen.bank.train.oracle import LoraTaskModule, train_multitask_adapter, train_task_adapter

__all__ = [
    "DEFAULT_TARGETS", "BuildSummary", "CausalLM", "CausalLoraModule", "LoraModule", "LoraTaskModule",
    "OracleSource", "PrototypeClassifier", "TrainConfig", "TrainResult", "attention_targets", "build_bank",
    "build_task", "cap_steps", "imported_oracles", "load_recipe", "store_result", "target_module_paths",
    "train_causal_adapter", "train_multitask_adapter", "train_task_adapter", "trained_oracles",
]
