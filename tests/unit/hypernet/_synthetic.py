"""A small synthetic bank: tasks "label 0 if X, label 1 if Y" whose adapters are a function of (X in slot 0, Y in
slot 1), for a tiny Llama saved as a local transformers directory (so its base-model id is a real local path)."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import MemorySource
from tests._models import tiny_llama

NAMES = ("Polish", "Czech", "German", "French", "Italian", "Spanish")
TARGETS = ("q_proj", "v_proj")


def _concept(name: str, slot: int, dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * slot + NAMES.index(name))
    return torch.randn(dim, generator=g) * 0.2


def synthetic_adapter(base_model: str, x: str, y: str, jitter_seed: int | None = None) -> LoraAdapter:
    """r = 2 adapter: B's columns encode X (slot 0) and Y (slot 1); A is shared (fixed seed)."""
    model = tiny_llama()
    lora_A, lora_B = {}, {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            out_f, in_f = module.weight.shape
            g = torch.Generator().manual_seed(7)
            lora_A[name] = torch.randn(2, in_f, generator=g) / in_f**0.5
            b = torch.stack([_concept(x, 0, out_f), _concept(y, 1, out_f)], dim=1)
            if jitter_seed is not None:
                b = b + 0.02 * torch.randn(b.shape, generator=torch.Generator().manual_seed(jitter_seed))
            lora_B[name] = b
    return LoraAdapter(base_model=base_model, r=2, lora_alpha=2.0, lora_A=lora_A, lora_B=lora_B)


def description(x: str, y: str) -> str:
    return f"label 0 if the text is written in {x}, label 1 if the text is written in {y}"


def synthetic_source(model_dir: Path, heldout: tuple[tuple[str, str], ...] = ()) -> MemorySource:
    base = canonical_base_model_id(model_dir)
    tasks, adapters, examples = [], {}, {}
    for i, (x, y) in enumerate(itertools.permutations(NAMES, 2)):
        name = f"syn/{x}-vs-{y}"
        tasks.append(TaskRecord(
            name=name, description=description(x, y), labels=(x, y),
            paraphrases=(f"Which is it? 0 = {x}, 1 = {y}",), family="syn",
            split="heldout" if (x, y) in heldout else "train",
            heldout_paraphrases=(f"output 0 when the input is written in {x}; output 1 when it is {y}",),
        ))
        adapters[name] = [(synthetic_adapter(base, x, y), "final"),
                          (synthetic_adapter(base, x, y, jitter_seed=i), "checkpoint")]
        examples[name] = [(f"{x} words number {k}", 0) for k in range(6)] + \
                         [(f"{y} words number {k}", 1) for k in range(6)]
    return MemorySource(tasks, adapters, examples)
