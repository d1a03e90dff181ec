from __future__ import annotations

import numpy as np
import pytest
import torch

from loragen.meta.config import ABMLLConfig, MetaConfig, TrainConfig
from loragen.meta.train import load_checkpoint, save_checkpoint


def test_elbo_increases_on_toy_tasks(trained_toy):
    _, _, history = trained_toy
    elbo = np.asarray(history["elbo"])
    assert len(elbo) == 40 and np.isfinite(elbo).all()
    assert elbo[-8:].mean() > elbo[:8].mean() + 5.0, (elbo[:8].mean(), elbo[-8:].mean())


def test_trained_posterior_mean_explains_each_task_better(trained_toy, toy_tasks, toy_classifier):
    from tests.unit.meta.conftest import build

    model, guide, _ = trained_toy
    _, fresh = build(toy_classifier)  # the same initialisation, untrained
    emb = torch.stack([t.embedding for t in toy_tasks])

    def log_lik(g):
        with torch.no_grad():
            loc, _ = g.posterior(emb)
            return [float(model.log_likelihood(loc[t], [x for x, _ in task.examples],
                                               torch.tensor([y for _, y in task.examples])))
                    for t, task in enumerate(toy_tasks)]

    before, after = log_lik(fresh), log_lik(guide)
    # Both orders of each pair are present, so one shared adapter cannot explain all four: per-task gains need
    # the amortized posterior to read the description.
    assert sum(after) > sum(before) + 10.0, (before, after)
    assert sum(a > b for a, b in zip(after, before)) >= 3, (before, after)


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
