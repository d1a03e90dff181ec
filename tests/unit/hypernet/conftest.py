"""Shared fixtures: the packaged MiniLM text encoder, a synthetic bank for a tiny Llama, one small trained CVAE."""

from __future__ import annotations

import pytest
import torch

from loragen.hypernet.config import ConditionConfig, HypernetConfig, ModelConfig, TrainConfig
from tests.unit.hypernet._synthetic import synthetic_source

HELDOUT = (("Polish", "Czech"), ("Czech", "Polish"))


@pytest.fixture(scope="session")
def encode():
    from loragen.hypernet._text import default_text_encode
    from loragen.hypernet.data import as_numpy_encoder

    return as_numpy_encoder(default_text_encode())


@pytest.fixture(scope="session")
def source(tiny_llama_dir):
    return synthetic_source(tiny_llama_dir, heldout=HELDOUT)


def tiny_config(**train) -> HypernetConfig:
    return HypernetConfig(
        model=ModelConfig(d_model=64, latent_dim=8, n_heads=4, n_layers=1),
        condition=ConditionConfig(n_examples=4, example_pool=12),
        train=TrainConfig(**{"batch_size": 16, "lr": 3e-3, "kl_anneal_steps": 20, **train}),
    )


@pytest.fixture(scope="session")
def trained(source, encode, tmp_path_factory):
    """(checkpoint dir, HypernetModule) after a short single-process fit on the synthetic bank."""
    from loragen.hypernet.train import train_hypernet

    torch.set_num_threads(1)  # 2 shared cores: more threads thrash
    out = tmp_path_factory.mktemp("ckpt") / "cvae"
    path, module, _ = train_hypernet(
        source, tiny_config(), out,
        trainer_kwargs={"max_epochs": 150, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False},
        encode=encode,
    )
    return path, module
