"""Merging into models: equal to PEFT's merge_and_unload, exact unmerge, several adapters, low precision."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from loragen.bank.lora import combine, load_peft, merge
from tests._models import random_adapter

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _peft_merged(model, targets, tmp_path, fan_in_fan_out=False, seed=3):
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False, fan_in_fan_out=fan_in_fan_out
    )
    peft_model = get_peft_model(copy.deepcopy(model), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    return peft_model.merge_and_unload().eval(), load_peft(tmp_path / "adapter")


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_merge_matches_peft_merge_and_unload(which, tiny_llama_model, tiny_gpt2_model, tmp_path):
    model, targets, fifo = {
        "llama": (tiny_llama_model, LLAMA_TARGETS, False),
        "gpt2": (tiny_gpt2_model, ("c_attn", "c_proj", "c_fc"), True),
    }[which]
    merged_by_peft, adapter = _peft_merged(model, targets, tmp_path, fan_in_fan_out=fifo)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 128, (2, 10))

    handle = merge(model, adapter)
    with torch.no_grad():
        diff = (model(ids).logits - merged_by_peft(ids).logits).abs().max().item()
    assert diff <= 1e-5
    for k, v in merged_by_peft.state_dict().items():
        assert torch.allclose(model.state_dict()[k], v, atol=1e-6), k

    handle.unmerge()
    for k, v in model.state_dict().items():
        assert (v - original[k]).abs().max().item() <= 1e-6, k
    with pytest.raises(RuntimeError, match="already unmerged"):
        handle.unmerge()


def test_merge_minilm_matches_peft(tmp_path):
    from loragen.bank.base_model import load_base_model

    model = load_base_model()
    merged_by_peft, adapter = _peft_merged(model, ("query", "key", "value", "dense"), tmp_path)
    ids = torch.randint(0, 1000, (2, 12))
    handle = merge(model, adapter)
    with torch.no_grad():
        diff = (model(input_ids=ids).last_hidden_state - merged_by_peft(input_ids=ids).last_hidden_state).abs().max()
    assert diff.item() <= 1e-5
    handle.unmerge()
    fresh = load_base_model()
    for (k, v), (_, w) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert (v - w).abs().max().item() <= 1e-6, k


def test_several_adapters_linear_equals_sequential_merges(tiny_llama_model):
    a1 = random_adapter(tiny_llama_model, ("q_proj", "v_proj"), seed=1)
    a2 = random_adapter(tiny_llama_model, ("v_proj", "down_proj"), r=2, seed=2)
    ref = copy.deepcopy(tiny_llama_model)
    merge(ref, a1, [0.7])
    merge(ref, a2, [-0.3])
    merge(tiny_llama_model, [a1, a2], [0.7, -0.3])
    for k, v in ref.state_dict().items():
        assert torch.allclose(tiny_llama_model.state_dict()[k], v, atol=1e-6), k


def test_combine_linear_svd_and_ties(tiny_llama_model):
    a1 = random_adapter(tiny_llama_model, ("q_proj",), seed=1)
    a2 = random_adapter(tiny_llama_model, ("q_proj",), seed=2)
    linear = combine([a1, a2], [0.5, 0.5])
    assert linear.r == 8
    m = a1.modules[0]
    expected = 0.5 * a1.delta_weight(m) + 0.5 * a2.delta_weight(m)
    assert torch.allclose(linear.delta_weight(m), expected, atol=1e-6)
    # SVD at full rank is exact; at lower rank it is the best approximation (error ≤ linear truncation).
    full = combine([a1, a2], [0.5, 0.5], method="svd", rank=8)
    assert torch.allclose(full.delta_weight(m), expected, atol=1e-5)
    low = combine([a1, a2], [0.5, 0.5], method="svd", rank=4)
    assert low.r == 4 and (low.delta_weight(m) - expected).norm() < (a1.delta_weight(m) * 0.5 - expected).norm()
    ties = combine([a1, a2], method="ties", rank=4, density=0.5)
    assert ties.r == 4 and torch.isfinite(ties.delta_weight(m)).all()
    with pytest.raises(ValueError, match="unknown combine method"):
        combine([a1, a2], method="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one weight per adapter"):
        combine([a1, a2], [1.0])


def test_ties_keeps_agreeing_signs_and_drops_conflicts():
    from loragen.bank.lora import LoraAdapter

    def adapter(delta):  # rank-1 adapter from a 1 x n row
        return LoraAdapter("t", 1, 1.0, {"m": delta.view(1, -1)}, {"m": torch.ones(1, 1)})

    d1 = torch.tensor([1.0, 2.0, -3.0, 0.1])
    d2 = torch.tensor([1.0, -1.0, -1.0, 0.1])
    ties = combine([adapter(d1), adapter(d2)], method="ties", rank=1, density=0.75)
    got = ties.delta_weight("m").view(-1)
    # entry 0: both +1 -> 1; entry 1: 2 vs -1 -> sign + wins, keep 2; entry 2: both negative -> -2; entry 3 trimmed.
    assert torch.allclose(got, torch.tensor([1.0, 2.0, -2.0, 0.0]), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_merge_accumulates_in_fp32_and_unmerges_exactly(dtype, tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, LLAMA_TARGETS)
    model = tiny_llama_model.to(dtype)
    ref = copy.deepcopy(model).float()  # fp32 reference from the same low-precision weights
    merge(ref, adapter)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    handle = merge(model, adapter)
    for k, v in model.state_dict().items():
        # one rounding of the fp32 result: within half an ulp of the target dtype
        assert torch.equal(v, ref.state_dict()[k].to(dtype)), k
    handle.unmerge()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
