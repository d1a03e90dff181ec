"""`sample_dispersion` from the factors equals the spread of the materialised ΔW, for one rank and mixed ranks."""

from __future__ import annotations

import pytest
import torch

from loragen.api.uncertainty import sample_dispersion
from loragen.bank.lora import LoraAdapter


def _adapter(seed: int, r: int = 4, alpha: float = 8.0, noise: float = 1.0) -> LoraAdapter:
    g = torch.Generator().manual_seed(seed)
    base = torch.Generator().manual_seed(0)
    mods = ("l0.q", "l0.v", "l1.q")
    lora_a = {m: torch.randn(r, 12, generator=base) + noise * torch.randn(r, 12, generator=g) for m in mods}
    lora_b = {m: torch.randn(10, r, generator=base) + noise * torch.randn(10, r, generator=g) for m in mods}
    return LoraAdapter(base_model="x", r=r, lora_alpha=alpha, lora_A=lora_a, lora_B=lora_b)


def _materialised(adapters: list[LoraAdapter]) -> float:
    deltas = torch.stack([torch.cat([a.delta_weight(m, torch.float64).flatten() for m in a.modules])
                          for a in adapters])
    mean = deltas.mean(0)
    return float((deltas - mean).norm(dim=1).mean() / mean.norm())


@pytest.mark.parametrize("noise", [1.0, 1e-3])
def test_matches_the_materialised_spread(noise):
    adapters = [_adapter(s, noise=noise) for s in range(1, 6)]
    assert sample_dispersion(adapters) == pytest.approx(_materialised(adapters), rel=1e-6)
    mixed = [*adapters[:2], _adapter(9, r=2, alpha=4.0, noise=noise)]  # another rank and scaling
    assert sample_dispersion(mixed) == pytest.approx(_materialised(mixed), rel=1e-6)


def test_identical_samples_have_no_spread():
    assert sample_dispersion([_adapter(3)] * 4) == pytest.approx(0.0, abs=1e-6)
