"""Find the base-model layers an adapter targets and check that every factor fits them."""

from __future__ import annotations

import torch
from torch import nn

from loragen.bank.errors import AdapterShapeError
from loragen.bank.lora.adapter import LoraAdapter


def _is_conv1d(module: nn.Module) -> bool:
    # GPT-2's Conv1D stores W as (in, out); PEFT marks such adapters fan_in_fan_out.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def target_weights(model: nn.Module, adapter: LoraAdapter) -> dict[str, tuple[torch.Tensor, bool]]:
    """Map each adapter module to (base weight, transposed) after checking every shape.

    `transposed` is True where the layer stores W as (in, out) (GPT-2's Conv1D).

    Raises:
        AdapterShapeError: listing every module that is missing, is not a linear layer, or whose
            shape does not fit; nothing is returned (or touched) unless all fit.
    """
    named = dict(model.named_modules())
    found: dict[str, tuple[torch.Tensor, bool]] = {}
    problems: list[str] = []
    for name, (out_f, in_f) in adapter.shapes().items():
        module = named.get(name)
        if module is None:
            problems.append(f"{name}: no such module in {type(model).__name__}")
            continue
        if isinstance(module, nn.Linear):
            weight, transposed = module.weight, False
        elif _is_conv1d(module):
            weight, transposed = module.weight, True
        else:
            problems.append(f"{name}: is a {type(module).__name__}, not a linear layer")
            continue
        expected = (in_f, out_f) if transposed else (out_f, in_f)
        if tuple(weight.shape) != expected:
            problems.append(
                f"{name}: adapter expects a weight of shape {expected}, the model's is {tuple(weight.shape)}"
            )
            continue
        found[name] = (weight, transposed)
    if problems:
        hint = ""
        if any("no such module" in p for p in problems):
            sample = [n for n, m in named.items() if isinstance(m, nn.Linear) or _is_conv1d(m)][:3]
            hint = f"\nThe model's linear layers are named like {sample}; was the adapter made for another model?"
        raise AdapterShapeError(
            f"adapter for {adapter.base_model!r} does not fit this model ({len(problems)} problem(s)):\n  - "
            + "\n  - ".join(problems[:20])
            + hint
        )
    return found
