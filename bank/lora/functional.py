"""Apply LoRA factors to a model without modifying it: differentiable in the factors.

Used wherever an adapter must be *run* rather than merged: training adapters (the factors are the parameters),
ABMLL's likelihood (the factors are samples from the posterior), and evaluation of many adapters against one
shared base model. Forward hooks add  s · (x @ Aᵀ) @ Bᵀ  to each targeted linear layer's output, which is what
PEFT's LoRA layer computes (without dropout).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from loragen.bank.errors import AdapterShapeError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.layers import _is_conv1d, target_weights


def _hook(a: torch.Tensor, b: torch.Tensor, scaling: float):
    def add_low_rank(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        return output + (x.to(a.dtype) @ a.T @ b.T * scaling).to(output.dtype)

    return add_low_rank


@contextmanager
def lora_applied(
    model: nn.Module,
    factors: LoraAdapter | Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    scaling: float | None = None,
) -> Iterator[nn.Module]:
    """Run `model` with LoRA factors added on the fly, inside a `with` block.

    Args:
        model: the base model (left unmodified; hooks are removed on exit, even on error).
        factors: a `LoraAdapter`, or module path -> (A (r, in), B (out, r)) tensors (which may require grad).
        scaling: the LoRA scaling for raw factors (default 1.0; taken from the adapter for a `LoraAdapter`).

    Usage::

        with lora_applied(model, adapter):
            out = model(**batch)
    """
    if isinstance(factors, LoraAdapter):
        target_weights(model, factors)  # shape check with the adapter's clear errors
        pairs = {m: (a, b) for m, a, b in factors.items()}
        scaling = factors.scaling if scaling is None else scaling
    else:
        pairs = dict(factors)
        scaling = 1.0 if scaling is None else scaling
    named = dict(model.named_modules())
    missing = [m for m in pairs if not (isinstance(named.get(m), nn.Linear) or _is_conv1d(named.get(m)))]
    if missing:
        raise AdapterShapeError(f"no linear layer named {missing[:3]} in {type(model).__name__}")
    handles = [named[m].register_forward_hook(_hook(a, b, scaling)) for m, (a, b) in pairs.items()]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
