"""Fixtures for the own-base-model tests: a local tiny Llama with a tokenizer, a tiny BERT, and a small CVAE trained
by the real training code on a synthetic bank for that Llama."""

from __future__ import annotations

import pytest
import torch

from tests._local_models import save_bert, save_llama


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    return save_llama(tmp_path_factory.mktemp("own-llama") / "tiny-llama")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("own-bert") / "tiny-bert")


@pytest.fixture(scope="session")
def llama_source(llama_dir):
    from tests.unit.hypernet._synthetic import synthetic_source

    return synthetic_source(llama_dir)


@pytest.fixture(scope="session")
def cvae_checkpoint(llama_source, tmp_path_factory):
    """A CVAE checkpoint for the tiny Llama, written by `train_hypernet` after a few epochs (fast, not good)."""
    from loragen.hypernet.config import ConditionConfig, HypernetConfig, ModelConfig, TrainConfig
    from loragen.hypernet.train import train_hypernet

    config = HypernetConfig(model=ModelConfig(d_model=32, latent_dim=4, n_heads=2, n_layers=1),
                            condition=ConditionConfig(n_examples=2, example_pool=4),
                            train=TrainConfig(batch_size=16, lr=3e-3, kl_anneal_steps=5))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: more threads thrash
    try:
        path, _, _ = train_hypernet(llama_source, config, tmp_path_factory.mktemp("own-ckpt") / "cvae",
                                    trainer_kwargs={"max_epochs": 3, "accelerator": "cpu", "devices": 1,
                                                    "enable_progress_bar": False})
    finally:
        torch.set_num_threads(threads)
    return path
