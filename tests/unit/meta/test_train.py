from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from loragen.bank.errors import CheckpointError
from loragen.meta.checkpoint import (CONFIG_NAME, FORMAT, FORMAT_VERSION, FULL_VERSION, WEIGHTS_NAME, load_checkpoint,
                                     save_checkpoint)
from loragen.meta.config import WARM_STARTS, ABMLLConfig, MetaConfig, TrainConfig
from loragen.meta.generate import ABMLLGenerator
from loragen.meta.train import warm_start
from tests.unit.meta.conftest import build


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
    path = save_checkpoint(model, guide, cfg, tmp_path / "ckpt", extra={"note": "toy"})
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    model2, guide2, cfg2, meta = load_checkpoint(path, toy_classifier)
    assert meta["extra"] == {"note": "toy"} and cfg2.model == model.config
    assert (meta["format"], meta["format_version"]) == (FORMAT, FULL_VERSION) and meta["layout"]["r"] == 2
    assert torch.equal(model2.floor, model.floor)
    emb = torch.randn(3, model.config.embed_dim)
    with torch.no_grad():
        for a, b in zip(guide.posterior(emb), guide2.posterior(emb)):
            torch.testing.assert_close(a, b)


def _saved(trained_toy, path):
    model, guide, _ = trained_toy
    return save_checkpoint(model, guide, MetaConfig(model=model.config), path)


def _edit_meta(path, **changes):
    meta = json.loads((path / CONFIG_NAME).read_text())
    meta.update(changes)
    (path / CONFIG_NAME).write_text(json.dumps(meta))


def test_newer_or_foreign_checkpoints_are_refused_with_what_to_do(trained_toy, tmp_path):
    newer = _saved(trained_toy, tmp_path / "newer")
    _edit_meta(newer, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer than this loragen.*upgrade loragen"):
        load_checkpoint(newer)
    foreign = _saved(trained_toy, tmp_path / "foreign")
    _edit_meta(foreign, format="loragen-hypernet-cvae")
    with pytest.raises(CheckpointError, match="not a loragen-meta-abmll checkpoint"):
        load_checkpoint(foreign)


def test_missing_checkpoints_name_the_path_and_the_training_command(trained_toy, tmp_path):
    for path in (tmp_path / "absent", tmp_path / "empty"):
        if path.name == "empty":
            path.mkdir()
        with pytest.raises(CheckpointError, match=f"{path}.*loragen train meta"):
            load_checkpoint(path)
    no_config = _saved(trained_toy, tmp_path / "no-config")
    (no_config / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match=f"missing {CONFIG_NAME}.*loragen train meta"):
        load_checkpoint(no_config)
    old = tmp_path / "old"
    old.mkdir()
    (old / "abmll.json").write_text("{}")
    (old / "abmll.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="abmll.json.*retrain"):
        ABMLLGenerator.from_checkpoint(old)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "abmll.pt").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="never loaded"):
        load_checkpoint(pickled)


def test_checkpoint_never_replaces_a_directory_it_did_not_write(trained_toy, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="refusing to replace"):
        _saved(trained_toy, other)
    assert (other / "keep.txt").read_text() == "mine"


def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match="r must be a positive integer"):
        ABMLLConfig(r=0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        TrainConfig(beta=-1)
    with pytest.raises(ValueError, match="tasks_per_batch"):
        TrainConfig(tasks_per_batch=0)


@pytest.mark.parametrize("method", WARM_STARTS)
def test_warm_start_fits_the_known_adapters_from_their_wordings(method, toy_classifier, toy_tasks):
    """Both warm starts move θ̂_loc to the adapters' mean and fit each task's adapter from its description better
    than the mean does; "pca" gets there with the loc head in closed form."""
    model, guide = build(toy_classifier)
    d = model.layout.num_parameters
    g = torch.Generator().manual_seed(0)
    adapters = [torch.randn(d, generator=g) * 0.05 for _ in toy_tasks]
    tasks = [dataclasses.replace(t, adapter=a) for t, a in zip(toy_tasks, adapters)]
    guide.fit_standardisation(torch.cat([t.wordings() for t in tasks]))
    losses = warm_start(guide, tasks, TrainConfig(warm_start_steps=200, warm_start_lr=1e-2, warm_start=method),
                        progress=False)
    assert torch.allclose(guide.theta_loc.detach(), torch.stack(adapters).mean(0), atol=1e-6)
    assert losses[-1] < 0.05  # relative to predicting the mean adapter (1.0)
    with torch.no_grad():
        loc, _ = guide.posterior(torch.stack([t.wordings()[0] for t in tasks]))
    nearest = torch.cdist(loc, torch.stack(adapters)).argmin(1)
    assert nearest.tolist() == list(range(len(tasks)))  # every description is mapped to its own task's adapter
    assert warm_start(guide, toy_tasks, TrainConfig(warm_start=method), progress=False) == []  # no known adapter


def test_an_unknown_warm_start_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"warm_start must be one of \('regression', 'pca'\), got 'svd'"):
        TrainConfig(warm_start="svd")
