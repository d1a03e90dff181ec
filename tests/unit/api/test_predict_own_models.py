"""`loragen predict` and `loragen merge` on a user's own base models: a causal-LM adapter completes inputs, an
encoder adapter classifies on any encoder; the base model defaults to the adapter's own (a relative path is read
from the adapter's folder, whatever the working directory)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from loragen.api.cli import main
from loragen.bank.causal_lm import complete
from loragen.bank.lora import load_peft, save_peft
from loragen.bank.lora.functional import lora_applied
from tests._local_models import BERT_TARGETS, LLAMA_TARGETS, tiny_bert
from tests._models import random_adapter, tiny_llama, tiny_tokenizer


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))


def _llama_adapter(llama_dir, tmp_path, base: str | None = None):
    adapter = random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=base or str(llama_dir), scale=0.5, seed=3)
    return adapter, save_peft(adapter, tmp_path / "llama-adapter")


def _expected_completions(llama_dir, adapter, texts, max_new_tokens):
    from loragen.bank.base_model import load_base_model

    model = load_base_model(llama_dir)
    with lora_applied(model, adapter):
        return complete(model, tiny_tokenizer(), texts, max_new_tokens=max_new_tokens)


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_predict_completes_text_inputs_with_a_causal_lm_adapter(llama_dir, tmp_path, capsys):
    adapter, path = _llama_adapter(llama_dir, tmp_path)
    texts = ["ab", "hello"]
    assert main(["predict", str(path), "--text", texts[0], "--text", texts[1], "--json", "--max-new-tokens", "6"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [r["text"] for r in rows] == texts and all(set(r) == {"text", "completion"} for r in rows)
    expected = _expected_completions(llama_dir, adapter, texts, 6)
    assert [r["completion"] for r in rows] == expected
    from loragen.bank.base_model import load_base_model

    base_only = complete(load_base_model(llama_dir), tiny_tokenizer(), texts, max_new_tokens=6)
    assert base_only != expected  # the adapter was applied: it changes what the model writes

    assert main(["predict", str(path), "--text", "ab", "--max-new-tokens", "6"]) == 0  # the plain form
    assert capsys.readouterr().out.strip() == f"ab -> {expected[0]}"


def test_predict_reads_jsonl_inputs_as_text_or_input(llama_dir, tmp_path, capsys):
    adapter, path = _llama_adapter(llama_dir, tmp_path)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "ab"}\n\n{"input": "xyz"}\n"plain"\n')
    assert main(["predict", str(path), "--file", str(inputs), "--json", "--max-new-tokens", "4"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [r["text"] for r in rows] == ["ab", "xyz", "plain"]
    assert [r["completion"] for r in rows] == _expected_completions(llama_dir, adapter, ["ab", "xyz", "plain"], 4)
    inputs.write_text('{"output": "no input"}\n')
    assert main(["predict", str(path), "--file", str(inputs)]) == 1
    assert f"{inputs}:1:" in capsys.readouterr().err


def test_base_model_is_the_adapters_own_relative_to_its_folder(llama_dir, tmp_path, capsys, monkeypatch):
    """adapter_config.json names the base model by a path relative to the adapter: predict and merge find it from
    any working directory, with no --base-model."""
    project = tmp_path / "project"
    shutil.copytree(llama_dir, project / "models" / "tiny-llama")
    adapter, path = _llama_adapter(llama_dir, tmp_path, base="../../models/tiny-llama")
    path = shutil.move(str(path), project / "adapters" / "mine")
    assert json.loads((project / "adapters" / "mine" / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "../../models/tiny-llama"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["predict", "../project/adapters/mine", "--text", "ab", "--json", "--max-new-tokens", "5"]) == 0
    [row] = _json_lines(capsys.readouterr().out)
    assert row["completion"] == _expected_completions(llama_dir, adapter, ["ab"], 5)[0]

    assert main(["merge", "../project/adapters/mine", "-o", "merged", "--device", "cpu"]) == 0
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(elsewhere / "merged").eval()
    reference = AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    ids = torch.randint(0, 100, (1, 7))
    with torch.no_grad(), lora_applied(reference, load_peft(path)):
        expected = reference(ids).logits
        assert (merged(ids).logits - expected).abs().max().item() <= 1e-4
    assert (elsewhere / "merged" / "tokenizer.json").is_file()  # the base model's tokenizer came along


def test_an_adapter_without_a_base_model_needs_base_model(llama_dir, tmp_path, capsys):
    adapter = random_adapter(tiny_llama(), LLAMA_TARGETS, base_model="")
    path = save_peft(adapter, tmp_path / "anonymous")
    assert main(["predict", str(path), "--text", "ab"]) == 1
    assert "--base-model" in capsys.readouterr().err
    assert main(["predict", str(path), "--text", "ab", "--base-model", str(llama_dir), "--max-new-tokens", "3"]) == 0


def test_predict_classifies_with_an_encoder_adapter_on_any_encoder(bert_dir, tmp_path, capsys):
    """A tiny BERT adapter: label probabilities from the prototype classifier on that BERT, label names from the
    adapter's metadata."""
    from loragen.bank.train.classifier import PrototypeClassifier

    adapter = random_adapter(tiny_bert(), BERT_TARGETS, base_model=str(bert_dir), scale=0.5, seed=5)
    path = save_peft(adapter.with_metadata(labels=["question", "statement"]), tmp_path / "bert-adapter")
    texts = ["is it raining?", "it is raining."]
    assert main(["predict", str(path), "--text", texts[0], "--text", texts[1], "--json", "--device", "cpu"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    expected = torch.softmax(PrototypeClassifier(str(bert_dir)).logits(texts, load_peft(path), num_labels=2), -1)
    for row, probs in zip(rows, expected.tolist()):
        assert set(row["probabilities"]) == {"question", "statement"}
        assert list(row["probabilities"].values()) == pytest.approx(probs, abs=1e-5)
        assert row["label"] == ["question", "statement"][row["prediction"]]
    assert main(["predict", str(path), "--text", "x", "--json", "--labels", "a,b"]) == 0
    assert set(_json_lines(capsys.readouterr().out)[0]["probabilities"]) == {"a", "b"}
