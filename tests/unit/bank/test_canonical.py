"""Canonical form: keeps ΔW, is gauge-invariant, truncates optimally, is idempotent."""

from __future__ import annotations

import torch

from loragen.bank.lora import LoraAdapter, canonicalize, is_canonical
from loragen.bank.lora.canonical import canonical_factors
from tests._models import random_adapter


def _rel(x, y):
    return ((x - y).norm() / y.norm()).item()


def test_canonical_keeps_delta_w(tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj", "down_proj"), r=8, alpha=16)
    canon = canonicalize(adapter)
    assert is_canonical(canon) and canon.lora_alpha == canon.r == 8 and canon.scaling == 1.0
    for m in adapter.modules:
        assert _rel(canon.delta_weight(m), adapter.delta_weight(m)) <= 1e-5


def test_canonical_is_identical_under_reparametrisation(tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj", "v_proj", "up_proj"), r=6)
    g = torch.Generator().manual_seed(7)
    lora_A, lora_B = {}, {}
    for m, a, b in adapter.items():
        rot = torch.randn(6, 6, generator=g, dtype=torch.float64) + 3 * torch.eye(6, dtype=torch.float64)
        lora_B[m] = (b.double() @ rot).float()
        lora_A[m] = (torch.linalg.inv(rot) @ a.double()).float()
    other = LoraAdapter(adapter.base_model, 6, adapter.lora_alpha, lora_A, lora_B)
    c1, c2 = canonicalize(adapter), canonicalize(other)
    for m in adapter.modules:
        assert torch.allclose(c1.lora_A[m], c2.lora_A[m], atol=1e-5), m
        assert torch.allclose(c1.lora_B[m], c2.lora_B[m], atol=1e-5), m
    # different alpha, same ΔW: same canonical tensors too
    doubled = LoraAdapter(adapter.base_model, 6, adapter.lora_alpha * 2, adapter.lora_A,
                          {m: b / 2 for m, b in adapter.lora_B.items()})
    c3 = canonicalize(doubled)
    assert all(torch.allclose(c1.lora_B[m], c3.lora_B[m], atol=1e-5) for m in adapter.modules)


def test_truncation_is_the_best_low_rank_approximation():
    b, a = torch.randn(20, 6, dtype=torch.float64), torch.randn(6, 30, dtype=torch.float64)
    delta = b @ a
    nb, na, s = canonical_factors(b, a, 1.0, rank=3)
    svals = torch.linalg.svdvals(delta)
    assert torch.allclose(s, svals[:3])
    assert abs((delta - nb @ na).norm().item() - svals[3:].norm().item()) < 1e-8


def test_canonical_is_idempotent_and_zero_adapters_stay_zero(tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj",), r=4)
    once = canonicalize(adapter)
    twice = canonicalize(once)
    assert twice.sha256() == once.sha256()  # bit-identical, so the bank's checksum de-duplication holds
    # a non-canonical adapter claiming to be canonical is still canonicalised (the check is numeric)
    liar = adapter.with_metadata(canonical=True)
    liar = LoraAdapter(liar.base_model, liar.r, float(liar.r), liar.lora_A,
                       {m: b * liar.scaling for m, b in liar.lora_B.items()}, metadata=liar.metadata)
    assert canonicalize(liar).sha256() != liar.sha256()
    assert all(torch.allclose(canonicalize(liar).lora_B[m], once.lora_B[m], atol=1e-5) for m in once.modules)
    zero = LoraAdapter("t", 4, 4.0, {"m": torch.randn(4, 8)}, {"m": torch.zeros(5, 4)})
    cz = canonicalize(zero)
    assert cz.lora_A["m"].abs().max() == 0 and cz.lora_B["m"].abs().max() == 0
    # rank-deficient ΔW: the null components are zero, so the result is canonical too
    low = LoraAdapter("t", 4, 4.0, {"m": torch.randn(4, 8)}, {"m": torch.cat([torch.randn(5, 1)] * 4, dim=1)})
    cl = canonicalize(low)
    assert cl.lora_B["m"][:, 1:].abs().max() == 0


def test_flat_round_trip(tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj", "v_proj"))
    flat = adapter.flat_parameters()
    again = adapter.from_flat(flat.clone())
    assert again.sha256() == adapter.sha256()
