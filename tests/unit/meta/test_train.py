from __future__ import annotations

import numpy as np
import pytest
import torch

from meta.config import ABMLLConfig, MetaConfig, TrainConfig
from meta.train import load_checkpoint, save_checkpoint


def test_elbo_increases_on_toy_tasks(trained_toy):
    _, _, history = trained_toy
    elbo = np.asarray(history["elbo"])
    assert len(elbo) == 40 and np.isfinite(elbo).all()
    assert elbo[-8:].mean() > elbo[:8].mean() + 5.0, (elbo[:8].mean(), elbo[-8:].mean())


def test_trained_posterior_fits_each_toy_task(trained_toy, toy_tasks):
    model, guide, _ = trained_toy
    emb = torch.stack([t.embedding for t in toy_tasks])
    with torch.no_grad():
        loc, _ = guide.posterior(emb)
        accs = []
        for t, task in enumerate(toy_tasks):
            logits = model.logits(loc[t], [x for x, _ in task.examples])
            accs.append((logits.argmax(-1) == torch.tensor([y for _, y in task.examples])).float().mean().item())
    # Both orders of each pair are present, so the base model's mean accuracy over the four is exactly 0.5
    # (base(B, A) = 1 - base(A, B)); beating it on average, and on every task, needs the description.
    assert sum(accs) / 4 > 0.58 and min(accs) > 0.5, accs


def test_checkpoint_roundtrip_without_pickle(trained_toy, tmp_path, toy_classifier):
    model, guide, _ = trained_toy
    cfg = MetaConfig(model=model.config)
    save_checkpoint(tmp_path, model, guide, cfg, extra={"note": "toy"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abmll.json", "abmll.safetensors"]
    model2, guide2, cfg2, extra = load_checkpoint(tmp_path, toy_classifier)
    assert extra == {"note": "toy"} and cfg2.model == model.config
    emb = torch.randn(3, model.config.embed_dim)
    with torch.no_grad():
        for a, b in zip(guide.posterior(emb), guide2.posterior(emb)):
            torch.testing.assert_close(a, b)


def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match="r must be a positive integer"):
        ABMLLConfig(r=0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        TrainConfig(beta=-1)
    with pytest.raises(ValueError, match="tasks_per_batch"):
        TrainConfig(tasks_per_batch=0)
