"""lora_applied runs a model with LoRA on the fly: same outputs as merging, gradients reach the factors."""

from __future__ import annotations

import copy

import pytest
import torch

from loragen.bank.errors import AdapterShapeError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora import merge
from loragen.bank.lora.functional import lora_applied
from tests._models import random_adapter


def test_hooks_match_merge_and_leave_model_untouched(tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj", "v_proj", "down_proj"))
    ids = torch.randint(0, 128, (2, 8))
    merged = copy.deepcopy(tiny_llama_model)
    merge(merged, adapter)
    with torch.no_grad(), lora_applied(tiny_llama_model, adapter):
        hooked = tiny_llama_model(ids).logits
        expected = merged(ids).logits
    assert torch.allclose(hooked, expected, atol=1e-5)
    with torch.no_grad():
        plain = tiny_llama_model(ids).logits
    assert not torch.allclose(plain, expected, atol=1e-3)  # hooks are gone after the block


def test_gradients_flow_to_raw_factors(tiny_llama_model):
    name = "model.layers.0.self_attn.q_proj"
    a = torch.randn(2, 32, requires_grad=True)
    b = torch.zeros(32, 2, requires_grad=True)
    with lora_applied(tiny_llama_model, {name: (a, b)}, scaling=2.0):
        tiny_llama_model(torch.randint(0, 128, (1, 5))).logits.sum().backward()
    assert b.grad is not None and b.grad.abs().sum() > 0
    with pytest.raises(AdapterShapeError, match="no linear layer"):
        with lora_applied(tiny_llama_model, {"nope": (a, b)}):
            pass


def test_generation_request_validates_input():
    GenerationRequest("label 0 if Polish, label 1 if Czech", labels=("Polish", "Czech"), examples=(("Dzień", 0),))
    with pytest.raises(ValueError, match="description is empty"):
        GenerationRequest("   ")
    with pytest.raises(ValueError, match="characters; the limit"):
        GenerationRequest("x" * 5000)
    with pytest.raises(ValueError, match=r"example labels must be in \[0, 1\]"):
        GenerationRequest("pl vs cs", labels=("pl", "cs"), examples=(("a", 3),))
    with pytest.raises(ValueError, match="labels must name at least two"):
        GenerationRequest("pl vs cs", labels=("pl",))
