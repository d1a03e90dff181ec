"""`loragen merge` end to end: real CLI process, real PEFT adapter, real transformers model on disk."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tests.e2e._cli import run_cli


def test_merge_cli_matches_peft(tmp_path, tiny_llama_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    torch.manual_seed(5)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(base), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    expected = peft_model.merge_and_unload().eval()

    result = run_cli("merge", tmp_path / "adapter", "--base-model", tiny_llama_dir, "-o", tmp_path / "merged",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert (merged(ids).logits - expected(ids).logits).abs().max().item() <= 1e-5


def test_merge_cli_errors_are_clear_and_exit_1(tmp_path, tiny_llama_dir):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_model.bin").write_bytes(b"not really a pickle")
    (tmp_path / "bad" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    result = run_cli("merge", tmp_path / "bad", "--base-model", tiny_llama_dir, "-o", tmp_path / "out")
    assert result.returncode == 1
    assert "pickle" in result.stderr and "never unpickles" in result.stderr
    assert not (tmp_path / "out").exists()
    result = run_cli("merge", tmp_path / "bad", "--base-model", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip()


def test_merge_cli_writes_atomically_and_replaces_only_a_model(tmp_path, tiny_llama_dir):
    """The CLI and the service write merged models with one function (bank.lora.save_merged_model): a complete
    folder or none, an earlier merged model replaced, anything else refused, no temporary folder left behind."""
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    torch.manual_seed(6)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(base), config).save_pretrained(tmp_path / "adapter")
    out = tmp_path / "merged"
    args = ("merge", tmp_path / "adapter", "--base-model", tiny_llama_dir, "-o", out, "--device", "cpu")
    assert run_cli(*args).returncode == 0
    first = (out / "model.safetensors").stat().st_mtime_ns
    result = run_cli(*args)  # again: the earlier merged model is replaced
    assert result.returncode == 0, result.stderr
    assert (out / "model.safetensors").stat().st_mtime_ns != first and (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]  # no .merged.* temporary left

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("not a model")
    result = run_cli("merge", tmp_path / "adapter", "--base-model", tiny_llama_dir, "-o", precious, "--device", "cpu")
    assert result.returncode == 1 and "refusing to replace it" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged", "precious"]
