"""A local base-model path gets its id without converting a packaged model (SmolLM2's GGUF takes a minute), and a
path into a packaged model's converted directory is still that packaged model."""

from __future__ import annotations

import pytest

from loragen.bank import base_model
from loragen.bank.base_model import SMOLLM2, canonical_base_model_id


@pytest.fixture(autouse=True)
def _no_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))

    def refuse(*args, **kwargs):
        raise AssertionError("a packaged model was converted while identifying a local path")

    monkeypatch.setattr(base_model, "_convert_gguf", refuse)


def test_a_local_path_never_converts_a_packaged_model(tiny_llama_dir):
    assert base_model.smollm2_converted() is None
    assert canonical_base_model_id(tiny_llama_dir) == str(tiny_llama_dir.resolve())
    assert canonical_base_model_id("minilm") == base_model.DEFAULT_BASE_MODEL


def test_the_converted_directory_is_the_packaged_model(tiny_llama_dir, tmp_path):
    import shutil

    target = tmp_path / "home" / "models" / "SmolLM2-135M-Instruct"
    shutil.copytree(tiny_llama_dir, target)  # stands in for the converted copy (config.json + model.safetensors)
    assert base_model.smollm2_converted() == target
    assert canonical_base_model_id(target) == SMOLLM2
    assert canonical_base_model_id(tiny_llama_dir) == str(tiny_llama_dir.resolve())
