"""Fixtures for meta/: the 4-task toy problem and one ABMLL trained on it (shared, it takes seconds)."""

from __future__ import annotations

import pyro
import pytest
import torch

from loragen.bank.device import torch_threads
from loragen.meta.config import ABMLLConfig, TrainConfig
from loragen.meta.data import MetaTask
from loragen.meta.guide import ABMLLGuide
from loragen.meta.model import ABMLLModel, LoraLayout, weight_floor
from loragen.meta.train import run_svi
from tests.unit.meta._toy import TASKS, ToyClassifier, description, description_embeddings, task_examples

TOY_CONFIG = ABMLLConfig(r=2, target_modules=("query", "value"), embed_dim=16, hidden_dim=32, code_dim=8)


@pytest.fixture(autouse=True)
def _clear_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """Tiny models on shared cores: one intra-op thread avoids oversubscription stalls (10x slower otherwise)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def toy_classifier() -> ToyClassifier:
    return ToyClassifier()


@pytest.fixture(scope="session")
def toy_tasks() -> list[MetaTask]:
    emb = description_embeddings(TOY_CONFIG.embed_dim)
    return [MetaTask(f"toy/{a}-{b}", description((a, b)), emb[i], task_examples((a, b), 32, seed=i),
                     support=task_examples((a, b), 8, seed=100 + i))
            for i, (a, b) in enumerate(TASKS)]


def build(classifier, seed: int = 0) -> tuple[ABMLLModel, ABMLLGuide]:
    layout = LoraLayout.from_model(classifier.model, TOY_CONFIG, base_model="toy")
    model = ABMLLModel(layout, weight_floor(classifier.model, layout, TOY_CONFIG.scale_floor), classifier, TOY_CONFIG)
    return model, ABMLLGuide(model, seed=seed)


@pytest.fixture(scope="session")
def trained_toy(toy_classifier, toy_tasks):
    """ABMLL after 40 SVI steps on the toy tasks: (model, guide, history)."""
    torch.manual_seed(0)
    pyro.clear_param_store()
    model, guide = build(toy_classifier)
    cfg = TrainConfig(steps=40, tasks_per_batch=4, examples_per_task=16, lr=3e-2, mean_lr_scale=1.0,
                      warm_start_steps=0, seed=0)
    history = run_svi(model, guide, toy_tasks, cfg, progress=False)
    return model, guide, history
