"""Shared fixtures: tiny random models built from configs (no download), the packaged MiniLM, fixed seeds."""

from __future__ import annotations

import os

import pytest
import torch

from tests._models import tiny_gpt2, tiny_llama

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fixed_seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_llama_model():
    return tiny_llama()


@pytest.fixture
def tiny_gpt2_model():
    return tiny_gpt2()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny Llama saved as a local transformers directory (what users pass as a base-model path)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _no_shipped_generators(tmp_path_factory, monkeypatch):
    """Tests see no shipped generators unless they put some in `$LORAGEN_SHIPPED_DIR` themselves: the package's own
    (release artefacts) must not change which checkpoint a lookup test finds."""
    monkeypatch.setenv("LORAGEN_SHIPPED_DIR", str(tmp_path_factory.getbasetemp() / "no-shipped"))
