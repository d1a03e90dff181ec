"""Train the hypernetwork on a bank with a Lightning Trainer, and write a safetensors + JSON checkpoint.

Usage::

    with Bank.open("bank.duckdb") as bank:
        source = snapshot(BankSource(bank), config)     # read everything, then the bank can close
    path = train_hypernet(source, config, "ckpt/", trainer_kwargs={"max_epochs": 200})
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as L
import torch

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Example, MemorySource, TaskSource
from loragen.hypernet.checkpoint import save_checkpoint
from loragen.hypernet.condition import TextEncode
from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.data import HypernetDataModule, as_numpy_encoder, training_tasks
from loragen.hypernet.module import HypernetModule

log = logging.getLogger(__name__)


def snapshot(source: TaskSource, config: HypernetConfig) -> MemorySource:
    """Read every in-bank task, its adapters and an example pool into memory.

    Training then never touches the bank again, so each DDP rank can read it in turn (DuckDB allows one
    read-write process per file) and close it before training starts.
    """
    tasks = training_tasks(source)
    pool, seed = config.condition.example_pool, config.train.seed
    return MemorySource(
        task_list=tasks,
        adapter_map={t.name: source.adapters(t.name) for t in tasks},
        example_map={t.name: _examples(source, t, pool, seed) for t in tasks},
    )


def _examples(source: TaskSource, task: TaskRecord, n: int, seed: int) -> list[Example]:
    """A classification task's example pool (generation tasks have none: their pairs are no per-label channel);
    none, with a warning, where the source has no data for the task (its description still trains)."""
    if not task.labels:
        return []
    try:
        return source.examples(task, n, seed)
    except TaskDataError as err:
        log.warning("task %r: no examples for the examples channel (%s)", task.name, err)
        return []


def train_hypernet(
    source: TaskSource,
    config: HypernetConfig,
    out: str | os.PathLike,
    trainer_kwargs: dict[str, Any] | None = None,
    encode: TextEncode | None = None,
    text_encoder: str | None = None,
    callbacks: list[L.Callback] | None = None,
    skip_mismatched: bool = False,
) -> tuple[Path | None, HypernetModule, L.Trainer]:
    """Fit a CVAE on `source` and write its checkpoint to `out` (rank 0 only).

    Args:
        source: in-bank tasks and adapters (see `snapshot`).
        config: the hypernetwork config.
        out: the checkpoint directory.
        trainer_kwargs: Lightning Trainer arguments (devices, accelerator, strategy, precision, max_epochs, ...).
        encode: the text encoder function (default: the bank's TextEncoder for `text_encoder`).
        text_encoder: the text encoder's model name, recorded in the checkpoint.
        callbacks: extra Lightning callbacks.
        skip_mismatched: train on the majority adapter layout only, leaving other adapters out (default: refuse a
            bank whose adapters have several layouts; several ranks are fine, see `hypernet.bank_layout`).

    Returns:
        (checkpoint path or None on ranks other than 0, the module, the trainer).

    Raises:
        ConfigError: no in-bank task has an adapter, or adapters of several layouts without `skip_mismatched`.
    """
    if encode is None:
        from loragen.hypernet._text import default_text_encode

        encode = default_text_encode(text_encoder)
    dm = HypernetDataModule(source, config, as_numpy_encoder(encode), skip_mismatched=skip_mismatched)
    module = HypernetModule(config, dm.layout)
    kwargs = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
              "deterministic": True, **(trainer_kwargs or {})}
    replicas = ReplicaCheck()
    trainer = L.Trainer(callbacks=[replicas, *(callbacks or [])], **kwargs)
    trainer.fit(module, datamodule=dm)
    if not trainer.is_global_zero:
        return None, module, trainer
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    extra = {
        "text_encoder": text_encoder,
        "tasks": [t.name for t in dm.tasks],
        "task_kinds": dm.task_kinds(),
        "channels": dm.channels(),
        "n_train_adapters": len(dm.train_set),
        "global_step": trainer.global_step,
        "metrics": metrics,
        "subspace_energy_kept": module.model.space.energy_kept,
        "world_size": trainer.world_size,
        "replica_sha256": replicas.digests,
    }
    path = save_checkpoint(module.model.cpu(), config, out, extra=extra)
    log.info("wrote hypernet checkpoint %s (%d steps, %s)", path, trainer.global_step, metrics)
    return path, module, trainer


class ReplicaCheck(L.Callback):
    """At the end of training, gather every rank's parameters and record one sha256 per rank.

    Data-parallel replicas must end bit-identical; differing digests mean the ranks diverged (a bug in the
    strategy, non-deterministic per-rank state, or parameters outside DDP's reach), and a warning says so.
    """

    def __init__(self) -> None:
        self.digests: list[str] = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import hashlib

        flat = torch.cat([p.detach().reshape(-1).float() for p in pl_module.parameters()])  # (P,)
        gathered = trainer.strategy.all_gather(flat)  # (world, P), or (P,) on one device
        rows = gathered.reshape(trainer.world_size, -1).cpu()
        self.digests = [hashlib.sha256(r.numpy().tobytes()).hexdigest() for r in rows]
        if len(set(self.digests)) > 1:
            log.warning("data-parallel replicas diverged: parameter digests %s", self.digests)

