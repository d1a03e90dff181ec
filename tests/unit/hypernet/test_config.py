import logging

import pytest

from loragen.hypernet.config import ConditionConfig, HypernetConfig, ModelConfig, TrainConfig


@pytest.mark.parametrize("cls, kwargs, field", [
    (ModelConfig, {"d_model": 30, "n_heads": 4}, "d_model"),
    (ModelConfig, {"representation": "dense"}, "representation"),
    (ConditionConfig, {"p_labels": 1.5}, "p_labels"),
    (ConditionConfig, {"example_pool": 2, "n_examples": 8}, "example_pool"),
    (TrainConfig, {"lr": 0.0}, "lr"),
    (TrainConfig, {"kl_weight": -1.0}, "kl_weight"),
])
def test_invalid_values_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_round_trip_and_unknown_keys_warn(caplog):
    config = HypernetConfig(model=ModelConfig(d_model=64), train=TrainConfig(kl_weight=0.1))
    data = config.to_dict()
    assert HypernetConfig.from_dict(data) == config
    data["train"]["from_the_future"] = 1
    with caplog.at_level(logging.WARNING):
        assert HypernetConfig.from_dict(data) == config
    assert "from_the_future" in caplog.text


def test_kl_annealing_is_linear_then_constant():
    tc = TrainConfig(kl_weight=0.2, kl_anneal_steps=100)
    assert [tc.beta(s) for s in (0, 50, 100, 1000)] == [0.0, 0.1, 0.2, 0.2]
    assert TrainConfig(kl_weight=0.2, kl_anneal_steps=0).beta(0) == 0.2


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[3] / "hypernet" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        assert isinstance(HypernetConfig.from_file(path), HypernetConfig)
