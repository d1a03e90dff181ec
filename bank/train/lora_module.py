"""What every oracle recipe shares: which layers to adapt, the LoRA factors as parameters, trajectory snapshots,
early stopping and the Lightning fit that turns them into a `TrainResult`.

LoRA conventions (Hu et al., 2021, https://arxiv.org/abs/2106.09685, as in PEFT): A is Kaiming-uniform, B is zero,
ΔW = (alpha / r) · B @ A. A is drawn from a *fixed* seed (`TrainConfig.init_seed`) for every task, so bank adapters
share their starting point and are comparable factor by factor. The factors are plain `nn.Parameter`s applied with
`bank.lora.functional.lora_applied`; the base model is never modified.

A recipe subclasses `LoraModule` with its `training_step` (calling `track_loss`) and hands it to `fit_lora`.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler

from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.layers import _is_conv1d  # GPT-2's Conv1D: W stored (in, out), PEFT's fan_in_fan_out
from loragen.bank.train.config import TrainConfig, TrainResult

# Attention projections by architecture family, in the order they are tried (`attention_targets`).
ATTENTION_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "key", "value"),  # BERT-style encoders (MiniLM, BERT, RoBERTa)
    ("q_proj", "v_proj"),  # Llama-style decoders (Llama, SmolLM2, Mistral, Qwen)
    ("c_attn",),  # GPT-2 (a Conv1D holding q, k and v)
)


def layer_features(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a linear layer or a GPT-2 Conv1D."""
    if _is_conv1d(module):
        in_f, out_f = module.weight.shape
        return int(in_f), int(out_f)
    return module.in_features, module.out_features


def _adaptable(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) or _is_conv1d(m)}


def attention_targets(model: nn.Module) -> tuple[str, ...]:
    """The base model's attention projections: query/key/value (BERT-style), q_proj/v_proj (Llama-style) or
    c_attn (GPT-2).

    Raises:
        ConfigError: none of these is in the model (the message lists its layer names and how to choose).
    """
    names = {n.rsplit(".", 1)[-1] for n in _adaptable(model)}
    for targets in ATTENTION_TARGETS:
        if set(targets) <= names:
            return targets
    raise ConfigError(f"cannot tell the attention projections of {type(model).__name__} (its linear layers are "
                      f"named {sorted(names)[:12]}); set target_modules in a recipe file (--config)")


def layer_index(path: str) -> int | None:
    """The block index of a module path: its first number ("model.layers.3.self_attn.q_proj" -> 3), or None."""
    return next((int(part) for part in path.split(".") if part.isdigit()), None)


def target_module_paths(model: nn.Module, targets: tuple[str, ...],
                        layers: Sequence[int] | None = None) -> list[str]:
    """Full paths of the linear (or Conv1D) layers whose last name is in `targets`, sorted.

    Args:
        model: the base model.
        targets: short layer names ("query", "q_proj", ...).
        layers: keep only the layers of these blocks (the first number in a path); None keeps all.

    Raises:
        ConfigError: no layer matches, or some of `layers` hold none.
    """
    paths = sorted(n for n in _adaptable(model) if n.rsplit(".", 1)[-1] in targets)
    if not paths:
        raise ConfigError(f"no linear layer of {type(model).__name__} is named one of {list(targets)}; set "
                          "target_modules in a recipe file (--config) to layer names the model has")
    if layers is None:
        return paths
    found = {layer_index(p) for p in paths}
    missing = sorted(set(layers) - found)
    if missing:
        raise ConfigError(f"layers {missing} hold none of {list(targets)} in {type(model).__name__} (its blocks are "
                          f"{sorted(i for i in found if i is not None)}); fix `layers` in the recipe")
    return [p for p in paths if layer_index(p) in set(layers)]


class LoraModule(pl.LightningModule):
    """LoRA factors of `model`'s target layers as parameters, with snapshots after every step and early stopping.

    Args:
        model: the frozen base model the factors' paths refer to.
        base_model_id: its canonical id (recorded in every adapter).
        config: the recipe (rank, alpha, targets, layers, init seed, stopping rule, optimiser).
    """

    def __init__(self, model: nn.Module, base_model_id: str, config: TrainConfig) -> None:
        super().__init__()
        self.config, self.base_model_id = config, base_model_id
        named = dict(model.named_modules())
        self.paths = target_module_paths(model, config.target_modules, config.layers)
        self.fan_in_fan_out = any(_is_conv1d(named[p]) for p in self.paths)
        gen = torch.Generator().manual_seed(config.init_seed)
        a_list, b_list = [], []
        for path in self.paths:
            in_f, out_f = layer_features(named[path])
            a = torch.empty(config.r, in_f)  # (r, in)
            bound = 1.0 / math.sqrt(in_f)  # kaiming_uniform_(a=sqrt(5)) bound, as nn.Linear and PEFT
            a.uniform_(-bound, bound, generator=gen)
            a_list.append(nn.Parameter(a))
            b_list.append(nn.Parameter(torch.zeros(out_f, config.r)))  # (out, r): ΔW starts at 0
        self.lora_A, self.lora_B = nn.ParameterList(a_list), nn.ParameterList(b_list)
        self.snapshots: dict[int, LoraAdapter] = {}  # step -> adapter after that step (small: rank-r factors)
        self.running_loss = float("nan")

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {p: (a, b) for p, a, b in zip(self.paths, self.lora_A, self.lora_B)}

    def track_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Fold a step's loss into the running mean early stopping reads; returns it unchanged."""
        value = float(loss.detach())
        self.running_loss = value if math.isnan(self.running_loss) else 0.7 * self.running_loss + 0.3 * value
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        self.snapshots[step] = self.to_adapter(step=step)
        if step >= self.config.min_steps and self.running_loss < self.config.stop_loss:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def to_adapter(self, **metadata: Any) -> LoraAdapter:
        """The current factors as a detached CPU `LoraAdapter`."""
        return LoraAdapter(
            base_model=self.base_model_id,
            r=self.config.r,
            lora_alpha=self.config.lora_alpha,
            lora_A={p: a.detach().cpu().clone() for p, a in zip(self.paths, self.lora_A)},
            lora_B={p: b.detach().cpu().clone() for p, b in zip(self.paths, self.lora_B)},
            target_modules=sorted({p.rsplit(".", 1)[-1] for p in self.paths}),
            fan_in_fan_out=self.fan_in_fan_out,
            metadata=dict(metadata),
        )


def sampled_loader(examples: Sequence[Any], config: TrainConfig, collate: Callable[[list], Any]) -> DataLoader:
    """`config.steps` batches of `config.batch_size` examples drawn with replacement (seeded by `config.seed`)."""
    gen = torch.Generator().manual_seed(config.seed)
    sampler = RandomSampler(examples, replacement=True, num_samples=config.steps * config.batch_size, generator=gen)
    return DataLoader(list(examples), batch_size=config.batch_size, sampler=sampler, collate_fn=collate)


# Lightning's notices about its own internals and an empty validation set: nothing a user can act on
LIGHTNING_NOISE = (".*LeafSpec.*", ".*Total length of .* across ranks is zero.*", ".*does not have many workers.*")


def quiet_lightning() -> None:
    """One Trainer per task: its banner lines ("GPU available: ...") and notices about its own internals, once per
    task, would drown a build's progress lines."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


def fit_lora(module: LoraModule, loader: DataLoader, device: torch.device, meta: dict[str, Any]) -> TrainResult:
    """Train `module` on `loader` with Lightning and return the final adapter, its checkpoints and metrics.

    Args:
        module: the recipe's module (its config sets steps, stopping and checkpoints).
        loader: the training batches (`sampled_loader`).
        device: where the base model lives (the Trainer's accelerator).
        meta: metadata stamped on every adapter (task, description).

    Returns:
        `TrainResult` whose adapters carry metadata `meta`, kind ("final"/"checkpoint") and step; metrics hold
        train_loss (running mean), steps, train_seconds and the config.
    """
    quiet_lightning()
    config = module.config
    trainer = pl.Trainer(max_steps=config.steps, accelerator=device.type, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - start
    steps_run = max(module.snapshots)
    final = module.snapshots[steps_run].with_metadata(**meta, kind="final")
    checkpoints = [module.snapshots[s].with_metadata(**meta, kind="checkpoint")
                   for s in config.checkpoint_steps(steps_run)]
    metrics = {"train_loss": module.running_loss, "steps": steps_run, "train_seconds": seconds,
               "config": config.as_dict()}
    return TrainResult(final=final, checkpoints=checkpoints, metrics=metrics)
