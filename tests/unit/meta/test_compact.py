"""A compact ABMLL checkpoint: fp16 storage, no recomputable `unit` buffer, the same posterior within tolerance."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from loragen.bank._checkpoint import checkpoint_bytes
from loragen.meta.checkpoint import FORMAT_VERSION, compact_checkpoint, load_checkpoint, save_checkpoint
from loragen.meta.config import MetaConfig


def test_compact_abmll_is_smaller_and_keeps_the_posterior(trained_toy, tmp_path):
    model, guide, _ = trained_toy
    full = save_checkpoint(model, guide, MetaConfig(model=model.config), tmp_path / "full")
    report = compact_checkpoint(full, tmp_path / "small")
    assert report["bytes_after"] < 0.75 * report["bytes_before"] == 0.75 * checkpoint_bytes(full)
    meta = json.loads((tmp_path / "small" / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["storage"]["recomputed"] == ["guide.unit"]
    with safe_open(str(tmp_path / "small" / "model.safetensors"), "pt") as f:
        assert "guide.unit" not in f.keys()
        assert any(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    _, g_full, _, _ = load_checkpoint(full)
    _, g_small, _, _ = load_checkpoint(tmp_path / "small")
    torch.testing.assert_close(g_small.unit, g_full.unit)  # rebuilt from the floor
    emb = torch.randn(4, model.config.embed_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(g_full.posterior(emb), g_small.posterior(emb)):
            assert float((a - b).norm() / a.norm()) < 1e-2
