"""The oracle recipe's settings (`TrainConfig`, shared by the classification and causal-LM recipes) and what a
training run returns (`TrainResult`).

A recipe file is YAML or JSON holding some of `TrainConfig`'s fields (`load_recipe`); fields it leaves out keep
their defaults, or what the caller fills in (the base model's attention projections for `target_modules`).

Usage::

    from loragen.bank.train import TrainConfig, load_recipe
    config = TrainConfig(**{"steps": 60, **load_recipe("recipe.yaml")})
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loragen.bank.config import check, raise_problems
from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter

DEFAULT_TARGETS = ("query", "key", "value")  # BERT-style attention projections (MiniLM, the built-in suite)


@dataclass
class TrainConfig:
    """How one task's oracle LoRA is trained.

    Attributes:
        r: LoRA rank.
        lora_alpha: LoRA alpha (scaling = alpha / r).
        target_modules: short names of the linear layers to adapt (BERT/MiniLM attention projections by
            default; `bank train` picks the base model's own attention projections unless a recipe names them).
        steps: most optimiser steps.
        min_steps: steps always taken before early stopping may end training.
        stop_loss: stop once the running mean of the training loss falls below this (0 disables early stopping):
            easy pairs converge in a dozen steps, close languages use the whole budget.
        lr: AdamW learning rate.
        batch_size: examples per step (sampled with replacement).
        seed: seed of the batch order.
        init_seed: seed of the A initialisation; keep it fixed so bank adapters are comparable.
        num_checkpoints: trajectory checkpoints kept besides the final adapter (evenly spaced over the steps run).
        weight_decay: AdamW weight decay.
        max_length: token window of one example (a causal LM's prompt + output; a classifier's text).
        layers: adapt only the blocks with these indices (the first number in a module path, e.g. the 3 of
            "model.layers.3.self_attn.q_proj"); None adapts every block.
        cache_frozen_layers: causal LMs (Llama-style): run the frozen blocks below the first adapted one once per
            task and train from their cached output (same loss, fewer FLOPs per step; needs `layers` above 0).
    """

    r: int = 4
    lora_alpha: float = 8.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    steps: int = 40
    min_steps: int = 8
    stop_loss: float = 0.03
    lr: float = 1e-2
    batch_size: int = 16
    seed: int = 0
    init_seed: int = 0
    num_checkpoints: int = 3
    weight_decay: float = 0.0
    max_length: int = 128
    layers: tuple[int, ...] | None = None
    cache_frozen_layers: bool = False

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.layers is not None:
            self.layers = tuple(self.layers)
        p: list[str] = []
        rules = {
            "r": (self.r >= 1, ">= 1"),
            "lora_alpha": (self.lora_alpha > 0, "> 0"),
            "target_modules": (len(self.target_modules) > 0 and all(isinstance(t, str) and t
                                                                     for t in self.target_modules),
                               "a non-empty list of module names"),
            "steps": (self.steps >= 1, ">= 1"),
            "min_steps": (1 <= self.min_steps <= self.steps, "in [1, steps]"),
            "stop_loss": (self.stop_loss >= 0, ">= 0"),
            "lr": (0 < self.lr < 1, "in (0, 1)"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "num_checkpoints": (0 <= self.num_checkpoints < self.min_steps, "in [0, min_steps)"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "max_length": (self.max_length >= 8, ">= 8 tokens"),
            "layers": (self.layers is None or (len(self.layers) > 0 and len(set(self.layers)) == len(self.layers)
                                               and all(_is_int(i) and i >= 0 for i in self.layers)),
                       "null or a non-empty list of distinct layer indices >= 0"),
            "cache_frozen_layers": (isinstance(self.cache_frozen_layers, bool), "true or false"),
        }
        for name, (ok, rule) in rules.items():
            check(p, ok, f"{name}={getattr(self, name)!r} (need {rule})")
        raise_problems("TrainConfig", p)

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def checkpoint_steps(self, steps_run: int) -> list[int]:
        """Steps whose adapters are kept as trajectory checkpoints: evenly spaced, the final step excluded."""
        n = self.num_checkpoints
        return sorted({max(1, round(steps_run * (i + 1) / (n + 1))) for i in range(n)} - {steps_run})

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (recorded with every trained adapter)."""
        out = dataclasses.asdict(self)
        out["target_modules"] = list(self.target_modules)
        out["layers"] = list(self.layers) if self.layers is not None else None
        return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cap_steps(recipe: Mapping[str, Any], steps: int) -> dict[str, Any]:
    """`recipe` (TrainConfig fields) with at most `steps` steps, min_steps and num_checkpoints lowered to fit
    (what a `--steps` flag does)."""
    base = TrainConfig(**recipe)
    min_steps = min(base.min_steps, steps)
    return {**recipe, "steps": steps, "min_steps": min_steps,
            "num_checkpoints": min(base.num_checkpoints, min_steps - 1)}


def load_recipe(path: str | Path) -> dict[str, Any]:
    """The `TrainConfig` fields a YAML or JSON recipe file sets (checked by building a `TrainConfig` from them).

    Raises:
        ConfigError: a missing or unparsable file, a file that is not a mapping, unknown keys, or bad values
            (every problem named).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe file; give a YAML or JSON file of TrainConfig fields.")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # yaml.YAMLError or json.JSONDecodeError
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} "
                          f"({' '.join(str(err).split())}); fix the file.") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of TrainConfig fields, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown recipe key(s) {unknown}; TrainConfig fields are {known}")
    try:
        TrainConfig(**data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except TypeError as err:  # a value of the wrong type, e.g. a string where a number belongs
        raise ConfigError(f"{path}: {err}; check the types of its values") from None
    return data


@dataclass
class TrainResult:
    """A trained task adapter: the final one, its trajectory checkpoints (oldest first) and metrics."""

    final: LoraAdapter
    checkpoints: list[LoraAdapter] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
