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


# ---- untrusted configs, weights and headers (uploads go through load_peft) ----------------------------------
def _config(saved, raw: str | None = None, **changes) -> None:
    """Rewrite the config with `changes`; `raw` replaces the lora_alpha value as JSON text (NaN, 1e999, ...)."""
    cfg_file = saved / "adapter_config.json"
    config = {**json.loads(cfg_file.read_text()), **changes}
    text = json.dumps(config)
    if raw is not None:
        text = text.replace(f'"lora_alpha": {json.dumps(config["lora_alpha"])}', f'"lora_alpha": {raw}')
    cfg_file.write_text(text)


@pytest.mark.parametrize("targets", [["foo", "bar"], ["q_proj"], ["q_proj", "v_proj", "k_proj"]])
def test_config_targets_must_name_exactly_the_weighted_modules(saved, targets):
    _config(saved, target_modules=targets)
    with pytest.raises(AdapterFormatError, match="target_modules do not match the weights"):
        load_peft(saved)


def test_targets_match_like_peft_and_a_regex_is_not_evaluated(saved):
    _config(saved, target_modules=["self_attn.q_proj", "v_proj"])  # PEFT: equal, or a suffix after a dot
    assert load_peft(saved).target_modules == ["self_attn.q_proj", "v_proj"]
    _config(saved, target_modules="(a+)+$")  # a regex is never run (it could take exponential time) ...
    assert load_peft(saved).target_modules == ["q_proj", "v_proj"]  # ... the weights tell the targets


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999", "1e308", "1000001", "0", "-2", '"8"',
                                 "true", "null", "[8]"])
def test_lora_alpha_must_be_finite_positive_and_sane(saved, raw):
    _config(saved, raw=raw)
    with pytest.raises(AdapterFormatError, match="lora_alpha must be a finite number"):
        load_peft(saved)


def test_config_field_types_are_checked(saved):
    _config(saved, r=True, use_rslora="false", fan_in_fan_out=1, target_modules=[], base_model_name_or_path=3)
    with pytest.raises(AdapterFormatError) as err:
        load_peft(saved)
    for words in ("r must be a positive integer", "use_rslora must be true or false", "fan_in_fan_out",
                  "target_modules must be a non-empty list", "base_model_name_or_path must be a string"):
        assert words in str(err.value)


def test_config_strings_must_be_unicode_and_shallow(saved):
    cfg_file = saved / "adapter_config.json"
    good = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps(good)[:-1] + ', "note": "\\ud800"}')
    with pytest.raises(AdapterFormatError, match="not valid Unicode"):
        load_peft(saved)
    cfg_file.write_text(json.dumps({**good, "x": json.loads("[" * 40 + "]" * 40)}))
    with pytest.raises(AdapterFormatError, match="nested deeper"):
        load_peft(saved)
    cfg_file.write_text(json.dumps(good)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(AdapterFormatError, match="nested too deeply"):
        load_peft(saved)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int8, torch.bool, torch.complex64])
def test_weights_must_be_floating_point(saved, dtype):
    from safetensors.torch import load_file, save_file

    weights = saved / "adapter_model.safetensors"
    save_file({k: v.to(dtype) for k, v in load_file(weights).items()}, weights)
    with pytest.raises(AdapterFormatError, match="must be float16, bfloat16, float32 or float64"):
        load_peft(saved)


@pytest.mark.parametrize(("header", "words"), [
    ("[1]", "a JSON list, not an object"),
    ('"text"', "a JSON str, not an object"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ("{oops", "not valid JSON"),
    ('{"a": "\\udc00"}', "not valid Unicode"),
])
def test_header_metadata_must_be_a_small_object(saved, header, words):
    from safetensors.torch import load_file, save_file

    weights = saved / "adapter_model.safetensors"
    save_file(load_file(weights), weights, metadata={"loragen": header})
    with pytest.raises(AdapterFormatError, match=words):
        load_peft(saved)


def test_adapter_refuses_integer_factors_and_a_non_finite_alpha():
    from loragen.bank.lora import LoraAdapter

    a, b = torch.ones(2, 4, dtype=torch.int32), torch.ones(4, 2, dtype=torch.int32)
    with pytest.raises(AdapterShapeError, match="floating point"):
        LoraAdapter(base_model="m", r=2, lora_alpha=2.0, lora_A={"l.q": a}, lora_B={"l.q": b})
    with pytest.raises(AdapterShapeError, match="lora_alpha must be a finite number"):
        LoraAdapter(base_model="m", r=2, lora_alpha=float("nan"), lora_A={"l.q": a.float()}, lora_B={"l.q": b.float()})


def test_an_adapter_on_some_blocks_loads_in_peft_on_those_blocks_only(tiny_llama_model, tmp_path, recwarn):
    """Adapters on the upper blocks only (the SmolLM2 recipe's `layers`): the config names those blocks
    (layers_to_transform / layers_pattern), so PEFT adds LoRA there only, warns about no missing keys, and its
    logits equal loragen's merge."""
    import copy

    adapter = random_adapter(tiny_llama_model, ("q_proj", "v_proj"), seed=3, layers=(1,))
    path = save_peft(adapter, tmp_path / "upper")
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1] and config["layers_pattern"] == "layers"
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_llama_model), path)
    assert not [w for w in recwarn if "missing adapter keys" in str(w.message)]
    lora_names = {n.split(".lora_")[0] for n, _ in peft_model.named_parameters() if ".lora_" in n}
    assert lora_names and all(".layers.1." in n for n in lora_names)
    ids = torch.tensor([[1, 5, 9, 3]])
    merged = copy.deepcopy(tiny_llama_model)
    merge(merged, adapter)  # in place
    with torch.no_grad():
        assert torch.allclose(peft_model(ids).logits, merged(ids).logits, atol=1e-5)
    full = random_adapter(tiny_llama_model, ("q_proj", "v_proj"), seed=3)  # every block: listed too, same effect
    assert json.loads((save_peft(full, tmp_path / "all") / "adapter_config.json").read_text())[
        "layers_to_transform"] == [0, 1]
