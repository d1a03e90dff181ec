"""The real CLI end to end on a real (DuckDB) bank: `loragen train hypernet` with DDP on 2 CPU processes, then
`loragen generate`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loragen.api.cli import main
from loragen.bank.lora import load_peft
from loragen.hypernet.checkpoint import CONFIG_NAME

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bank_path(source, tmp_path_factory):
    from loragen.bank.store import Bank

    path = tmp_path_factory.mktemp("bank") / "bank.duckdb"
    with Bank.open(path) as bank:
        bank.add_tasks(source.tasks())
        for task in source.tasks():
            for adapter, kind in source.adapters(task.name):
                bank.add(adapter, task=task.name, kind=kind, source="synthetic")
    return path


def test_ddp_two_cpu_processes_end_with_identical_weights(bank_path, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model": {"d_model": 32, "latent_dim": 4, "n_heads": 2, "n_layers": 1},
                                  "condition": {"n_examples": 2, "example_pool": 4}}))
    out = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "loragen.api", "train", "hypernet", "--bank", str(bank_path), "-o", str(out),
           "--config", str(config), "--batch-size", "4", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--max-steps", "4", "--no-progress-bar"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = json.loads((out / CONFIG_NAME).read_text())["extra"]
    assert extra["world_size"] == 2 and extra["global_step"] == 4
    digests = extra["replica_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]


def test_generate_command_writes_a_peft_directory(trained, tiny_llama_dir, tmp_path, capsys):
    ckpt, _ = trained
    out = tmp_path / "adapter"
    code = main(["generate", "label 0 if the text is written in Polish, label 1 if it is written in German",
                 "-o", str(out), "--checkpoint", str(ckpt), "--base-model", str(tiny_llama_dir)])
    assert code == 0 and str(out) in capsys.readouterr().out
    adapter = load_peft(out)
    assert adapter.metadata["generator"] == "cvae" and adapter.r == 16
    code = main(["generate", "label 0 if x", "-o", str(tmp_path / "bad"), "--checkpoint", str(ckpt),
                 "--base-model", "minilm"])
    assert code == 1 and "base model" in capsys.readouterr().err  # the packaged MiniLM is not this checkpoint's
