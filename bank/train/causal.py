"""Train one generation task's oracle LoRA on a causal LM with Lightning, and score adapters on its examples.

The loss is `bank.causal_lm.output_loss`: the mean negative log-likelihood of the output tokens (and the
end-of-sequence token) given the fixed prompt (`bank.causal_lm.prompt_ids`: the input alone, the adapter carries
the task). LoRA parameters, the fixed-seed Kaiming A / zero B initialisation, snapshots, early stopping and the fit
are the classification recipe's (`bank.train.lora_module`).

With `TrainConfig.cache_frozen_layers` and adapters on the upper blocks only (`TrainConfig.layers`), a Llama-style
model's frozen lower blocks run once per task: their output over the whole (padded) training split is cached, and
every step runs only the adapted blocks, the final norm and the LM head on the output-token positions (the head
over a 49k vocabulary is costly on every position). The loss and gradients are the plain path's (tested).

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
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from loragen.bank.base_model import load_frozen
from loragen.bank.causal_lm import (
    IGNORE_INDEX,
    collate,
    complete_like,
    encode_example,
    exact_match,
    mean_loglik,
    output_loss,
    output_token_probs,
    pad_id,
)
from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.functional import lora_applied
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import TaskData
from loragen.bank.train.config import TrainConfig, TrainResult
from loragen.bank.train.lora_module import LoraModule, layer_index, fit_lora, sampled_loader

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
        with self._applied(adapter):
            loglik = mean_loglik(self.model, self.tokenizer, list(pairs), max_length=max_length)
            preds = complete_like(self.model, self.tokenizer, pairs, max_length)
        return {"exact_match": exact_match(preds, refs), "loglik": sum(loglik) / len(loglik)}


    def predictive(self, pairs: Sequence[Pair], adapters: Sequence[LoraAdapter | None],
                   max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictive next-token distribution at each reference-output token, averaged over `adapters` (a
        posterior's samples: Bayesian model averaging; one adapter: its own distribution; None: the base model).

        Returns:
            (N, V) probabilities and (N,) reference token ids (`bank.causal_lm.output_token_probs`).

        Raises:
            ValueError: no pairs or no adapters.
        """
        if not pairs or not adapters:
            raise ValueError("predictive needs at least one (input, output) pair and one adapter (None: the base)")
        total, targets = None, None
        for adapter in adapters:
            with self._applied(adapter):
                probs, targets = output_token_probs(self.model, self.tokenizer, list(pairs), max_length=max_length)
            total = probs if total is None else total + probs
        return total / len(adapters), targets


class CausalLoraModule(LoraModule):
    """LoRA factors of a causal LM's target layers, trained on the output-token loss."""

    def __init__(self, lm: CausalLM, config: TrainConfig) -> None:
        super().__init__(lm.model, lm.base_model_id, config)
        self.lm = lm  # a plain object: the frozen base model is not registered as a submodule

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with lora_applied(self.lm.model, self.factors(), self.config.scaling):
            return self.track_loss(output_loss(self.lm.model, batch))


# Architectures whose blocks can be run from a cached hidden state through `model.model(inputs_embeds=...)`
# unchanged (no embedding scaling inside the forward, as Gemma has; no per-block position tricks).
CACHEABLE_MODEL_TYPES = ("llama",)


def cache_start(model: nn.Module, paths: Sequence[str]) -> int | None:
    """The first adapted block when the frozen blocks below it can be cached (a Llama-style model whose adapted
    layers all lie in blocks >= 1), else None."""
    blocks = getattr(getattr(model, "model", None), "layers", None)
    kind = getattr(getattr(model, "config", None), "model_type", None)
    indices = [layer_index(p) for p in paths]
    if (kind not in CACHEABLE_MODEL_TYPES or not isinstance(blocks, nn.ModuleList) or None in indices
            or not all(p.startswith("model.layers.") for p in paths) or not hasattr(model, "lm_head")):
        return None
    start = min(indices)  # type: ignore[type-var]
    return start if start >= 1 else None


@contextlib.contextmanager
def _blocks(model: nn.Module, start: int, stop: int | None) -> Iterator[None]:
    """Run `model.model` with its blocks start..stop-1 only (restored on exit)."""
    inner = model.model
    full = inner.layers
    inner.layers = nn.ModuleList(list(full)[start:stop])
    try:
        yield
    finally:
        inner.layers = full


@torch.no_grad()
def frozen_prefix(model: nn.Module, batch: dict[str, torch.Tensor], start: int, chunk: int = 16) -> torch.Tensor:
    """The hidden states entering block `start` (the output of the frozen blocks below it): (B, T, hidden)."""
    out = []
    with _blocks(model, 0, start):
        last = model.model.layers[start - 1]
        for i in range(0, batch["input_ids"].shape[0], chunk):
            captured: list[torch.Tensor] = []
            handle = last.register_forward_hook(
                lambda m, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
            try:
                model.model(input_ids=batch["input_ids"][i:i + chunk],
                            attention_mask=batch["attention_mask"][i:i + chunk], use_cache=False)
            finally:
                handle.remove()
            out.append(captured[-1])
    return torch.cat(out)


def upper_output_loss(model: nn.Module, hidden: torch.Tensor, batch: dict[str, torch.Tensor],
                      start: int) -> torch.Tensor:
    """`causal_lm.output_loss` from the cached hidden states entering block `start`: the upper blocks, the final
    norm, and the LM head on the output-token positions only."""
    with _blocks(model, start, None):
        h = model.model(inputs_embeds=hidden, attention_mask=batch["attention_mask"], use_cache=False)
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    picked = h.last_hidden_state[:, :-1][mask]  # (N, hidden): the positions that predict an output token
    logp = torch.log_softmax(model.lm_head(picked).float(), dim=-1)
    return -logp.gather(-1, targets[mask].unsqueeze(-1)).sum() / mask.sum().clamp_min(1)


class CachedCausalLoraModule(CausalLoraModule):
    """`CausalLoraModule` over cached lower-block activations: a batch is a tensor of training-example indices.

    Args:
        lm: the base model.
        config: the recipe.
        batch: the whole training split, right-padded (`causal_lm.collate`).
        start: the first adapted block (`cache_start`).
    """

    def __init__(self, lm: CausalLM, config: TrainConfig, batch: dict[str, torch.Tensor], start: int) -> None:
        super().__init__(lm, config)
        self.start = start
        self.data = {k: v.to(lm.device) for k, v in batch.items()}
        self.hidden = frozen_prefix(lm.model, self.data, start)

    def training_step(self, rows: torch.Tensor, batch_idx: int) -> torch.Tensor:
        rows = rows.to(self.hidden.device)
        width = int(self.data["attention_mask"][rows].sum(1).max())  # right-padded: trim to the batch's longest
        batch = {k: v[rows, :width] for k, v in self.data.items()}
        with lora_applied(self.lm.model, self.factors(), self.config.scaling):
            return self.track_loss(upper_output_loss(self.lm.model, self.hidden[rows, :width], batch, self.start))


def train_causal_adapter(spec: TaskRecord, data: TaskData, lm: CausalLM,
                         config: TrainConfig | None = None) -> TrainResult:
    """Train `spec`'s oracle LoRA on its (input, output) training pairs.

    Args:
        spec: the generation task (its name and description are stamped on the adapters).
        data: its examples; `data.train` is learnt from.
        lm: the base model (shared across tasks: loading it once saves seconds per task).
        config: the recipe; its `target_modules` must name layers of `lm.model` (e.g. q_proj, v_proj). With
            `cache_frozen_layers` (and `layers` above block 0 on a Llama-style model) the frozen blocks run once.

    Returns:
        `TrainResult` as `bank.train.lora_module.fit_lora` returns it (metrics["cached_below"]: the first adapted
        block when the lower ones were cached, else None).

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
    meta = {"task": spec.name, "description": spec.description}
    module: CausalLoraModule = CausalLoraModule(lm, config)
    start = cache_start(lm.model, module.paths) if config.cache_frozen_layers else None
    if start is None:
        loader = sampled_loader(encoded, config, functools.partial(collate, pad=pad_id(lm.tokenizer)))
    else:  # the same sampled order as the plain path, as indices into the cached split
        module = CachedCausalLoraModule(lm, config, collate(encoded, pad_id(lm.tokenizer)), start)
        loader = sampled_loader(range(len(encoded)), config, torch.tensor)
    result = fit_lora(module, loader, lm.device, meta)
    result.metrics["cached_below"] = start
    return result
