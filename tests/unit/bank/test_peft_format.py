"""PEFT on-disk format: round trips with real PEFT, and clear errors on bad input (nothing half-loaded)."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from loragen.bank.base_model import DEFAULT_BASE_MODEL, load_base_model, load_tokenizer
from loragen.bank.errors import AdapterFormatError, AdapterShapeError, NonFiniteError
from loragen.bank.lora import load_peft, merge, save_peft
from tests._models import random_adapter


@pytest.fixture(scope="module")
def minilm_inputs():
    tok = load_tokenizer()
    return tok(["Dzień dobry, jak się masz?", "Dobrý den, jak se máte?"], return_tensors="pt", padding=True)


def _peft_saved_minilm(tmp_path):
    """A PEFT-saved r=8 LoRA on query,value of MiniLM with non-zero B, and the PEFT model that made it."""
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False)
    peft_model = get_peft_model(load_base_model(), config).eval()
    peft_model.save_pretrained(tmp_path / "peft")
    return peft_model, tmp_path / "peft"


def test_peft_saved_adapter_round_trips_through_loragen(tmp_path, minilm_inputs):
    peft_model, peft_dir = _peft_saved_minilm(tmp_path)
    with torch.no_grad():
        expected = peft_model(**minilm_inputs).last_hidden_state

    adapter = load_peft(peft_dir)
    assert adapter.r == 8 and adapter.lora_alpha == 16 and len(adapter.modules) == 12
    assert sorted(adapter.target_modules) == ["query", "value"]
    save_peft(adapter, tmp_path / "loragen")

    reloaded = PeftModel.from_pretrained(load_base_model(), tmp_path / "loragen").eval()
    with torch.no_grad():
        got = reloaded(**minilm_inputs).last_hidden_state
    assert (got - expected).abs().max().item() <= 1e-5
    assert load_peft(tmp_path / "loragen").sha256() == adapter.sha256()


def test_metadata_travels_in_safetensors_header(tmp_path, tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj",)).with_metadata(task="pl-vs-cs", score=0.5)
    save_peft(adapter, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert "task" not in config  # PEFT sees a plain LoRA config
    assert load_peft(tmp_path / "a").metadata == {"task": "pl-vs-cs", "score": 0.5}


def test_default_base_model_is_recorded_by_hub_id():
    assert DEFAULT_BASE_MODEL == "sentence-transformers/all-MiniLM-L6-v2"


# ---- bad input --------------------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, tiny_llama_model):
    return save_peft(random_adapter(tiny_llama_model, ("q_proj", "v_proj")), tmp_path / "adapter")


def test_missing_directory_and_config(tmp_path):
    with pytest.raises(AdapterFormatError, match="not a directory"):
        load_peft(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterFormatError, match="missing adapter_config.json"):
        load_peft(tmp_path / "empty")


def test_pickled_weights_are_refused_not_unpickled(saved):
    (saved / "adapter_model.safetensors").unlink()
    marker = saved / "unpickled"
    # A pickle that would create a file if it were ever unpickled.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (saved / "adapter_model.bin").write_bytes(payload)
    with pytest.raises(AdapterFormatError, match="pickle"):
        load_peft(saved)
    assert not marker.exists()


def test_garbage_posing_as_safetensors(saved):
    (saved / "adapter_model.safetensors").write_bytes(b"\x80\x04K\x01." * 10)
    with pytest.raises(AdapterFormatError, match="not a readable safetensors"):
        load_peft(saved)


def test_bad_json_and_unsupported_configs(saved):
    cfg_file = saved / "adapter_config.json"
    good = json.loads(cfg_file.read_text())
    cfg_file.write_text("{not json")
    with pytest.raises(AdapterFormatError, match="not valid JSON"):
        load_peft(saved)
    cfg_file.write_text(json.dumps({**good, "use_dora": True, "peft_type": "IA3"}))
    with pytest.raises(AdapterFormatError, match="use_dora") as err:
        load_peft(saved)
    assert "IA3" in str(err.value)  # every problem reported at once


def test_rank_mismatch_with_config_names_the_module(saved):
    cfg_file = saved / "adapter_config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "r": 8}))
    with pytest.raises(AdapterShapeError, match=r"q_proj: rank does not match r=8"):
        load_peft(saved)


def test_nan_weights_are_refused_on_save_and_merge(tiny_llama_model, tmp_path):
    adapter = random_adapter(tiny_llama_model, ("q_proj",))
    adapter.lora_B[adapter.modules[0]][0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="q_proj"):
        save_peft(adapter, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    before = {k: v.clone() for k, v in tiny_llama_model.state_dict().items()}
    with pytest.raises(NonFiniteError):
        merge(tiny_llama_model, adapter)
    assert all(torch.equal(before[k], v) for k, v in tiny_llama_model.state_dict().items())


def test_shapes_that_do_not_fit_the_model_touch_nothing(tiny_llama_model, tiny_gpt2_model):
    adapter = random_adapter(tiny_gpt2_model, ("c_attn",))
    before = {k: v.clone() for k, v in tiny_llama_model.state_dict().items()}
    with pytest.raises(AdapterShapeError, match="no such module"):
        merge(tiny_llama_model, adapter)
    assert all(torch.equal(before[k], v) for k, v in tiny_llama_model.state_dict().items())

    wrong = random_adapter(tiny_llama_model, ("q_proj",))
    name = wrong.modules[-1]
    wrong.lora_A[name] = torch.randn(wrong.r, 7)
    with pytest.raises(AdapterShapeError, match=rf"{name}: adapter expects a weight of shape \(32, 7\)"):
        merge(tiny_llama_model, wrong)
    assert all(torch.equal(before[k], v) for k, v in tiny_llama_model.state_dict().items())


def test_save_replaces_atomically_and_refuses_foreign_directories(tmp_path, tiny_llama_model):
    adapter = random_adapter(tiny_llama_model, ("q_proj",))
    save_peft(adapter, tmp_path / "a")
    save_peft(adapter.with_metadata(v=2), tmp_path / "a")
    assert load_peft(tmp_path / "a").metadata == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temp dirs left behind
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("keep me")
    with pytest.raises(AdapterFormatError, match="refusing to replace"):
        save_peft(adapter, tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "keep me"
