"""Train one generation task's oracle LoRA on a causal LM with Lightning, and score adapters on its examples.

The loss is `bank.causal_lm.output_loss`: the mean negative log-likelihood of the output tokens (and the
end-of-sequence token) given the fixed prompt (`bank.causal_lm.prompt_ids`: the input alone, the adapter carries
the task). LoRA parameters, the fixed-seed Kaiming A / zero B initialisation, snapshots, early stopping and the fit
are the classification recipe's (`bank.train.lora_module`).

Usage::

    from loragen.bank.train import CausalLM, TrainConfig, train_causal_adapter
    lm = CausalLM("./my-llama")
    result = train_causal_adapter(task, data, lm, TrainConfig(target_modules=("q_proj", "v_proj")))
    lm.scores(data.val, result.final)       # {"exact_match": ..., "loglik": ...}
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence

import torch

from loragen.bank.base_model import load_frozen
from loragen.bank.causal_lm import (
    collate,
    complete,
    encode_example,
    exact_match,
    mean_loglik,
    output_loss,
    pad_id,
)
from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.functional import lora_applied
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import TaskData
from loragen.bank.train.config import TrainConfig, TrainResult
from loragen.bank.train.lora_module import LoraModule, fit_lora, sampled_loader

Pair = tuple[str, str]  # (input, output)


class CausalLM:
    """A frozen causal LM and its tokenizer: what a generation task's adapters are trained and scored with.

    Args:
        base_model: a packaged causal LM's name ("smollm2") or a local transformers directory.
        device: "cpu", "cuda", "auto" or None (auto).
    """

    def __init__(self, base_model: str | os.PathLike, device: str | torch.device | None = "cpu") -> None:
        base = load_frozen(base_model, device)
        self.model, self.tokenizer, self.base_model_id, self.device = (base.model, base.tokenizer, base.base_model_id,
                                                                       base.device)

    def _applied(self, adapter: LoraAdapter | None):
        if adapter is None:
            return contextlib.nullcontext()
        return lora_applied(self.model, adapter.to(self.device) if adapter.device != self.device else adapter)

    def scores(self, pairs: Sequence[Pair], adapter: LoraAdapter | None = None,
               max_length: int = 128) -> dict[str, float]:
        """Greedy exact match and mean per-token log-likelihood of the reference outputs, with `adapter` applied
        (None: the base model).

        Raises:
            ValueError: no pairs.
        """
        if not pairs:
            raise ValueError("scores needs at least one (input, output) pair")
        refs = [y for _, y in pairs]
        longest = max(len(self.tokenizer(y, add_special_tokens=False)["input_ids"]) for y in refs)
        with self._applied(adapter):
            loglik = mean_loglik(self.model, self.tokenizer, list(pairs), max_length=max_length)
            preds = complete(self.model, self.tokenizer, [x for x, _ in pairs], max_new_tokens=min(longest + 2,
                                                                                                   max_length))
        return {"exact_match": exact_match(preds, refs), "loglik": sum(loglik) / len(loglik)}


class CausalLoraModule(LoraModule):
    """LoRA factors of a causal LM's target layers, trained on the output-token loss."""

    def __init__(self, lm: CausalLM, config: TrainConfig) -> None:
        super().__init__(lm.model, lm.base_model_id, config)
        self.lm = lm  # a plain object: the frozen base model is not registered as a submodule

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with lora_applied(self.lm.model, self.factors(), self.config.scaling):
            return self.track_loss(output_loss(self.lm.model, batch))


def train_causal_adapter(spec: TaskRecord, data: TaskData, lm: CausalLM,
                         config: TrainConfig | None = None) -> TrainResult:
    """Train `spec`'s oracle LoRA on its (input, output) training pairs.

    Args:
        spec: the generation task (its name and description are stamped on the adapters).
        data: its examples; `data.train` is learnt from.
        lm: the base model (shared across tasks: loading it once saves seconds per task).
        config: the recipe; its `target_modules` must name layers of `lm.model` (e.g. q_proj, v_proj).

    Returns:
        `TrainResult` as `bank.train.lora_module.fit_lora` returns it.

    Raises:
        ConfigError: no training pairs, or pairs whose output falls entirely beyond `config.max_length`.
    """
    config = config or TrainConfig()
    if not data.train:
        raise ConfigError(f"task {spec.name!r} has no training examples")
    encoded = [encode_example(lm.tokenizer, x, y, max_length=config.max_length) for x, y in data.train]
    cut = sum(1 for e in encoded if all(label < 0 for label in e.labels))
    if cut:
        raise ConfigError(f"task {spec.name!r}: {cut} of {len(encoded)} training examples have no output token "
                          f"within max_length={config.max_length}; raise max_length in the recipe (--config)")
    loader = sampled_loader(encoded, config, functools.partial(collate, pad=pad_id(lm.tokenizer)))
    meta = {"task": spec.name, "description": spec.description}
    return fit_lora(CausalLoraModule(lm, config), loader, lm.device, meta)
