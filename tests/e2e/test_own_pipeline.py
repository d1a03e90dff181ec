"""Issue 12's acceptance: a user's own base model, tasks and adapters through the whole pipeline, by the CLI alone.

For a tiny random Llama (causal LM, generation tasks) and a tiny random BERT (encoder, classification tasks), only
`loragen` commands: import a task manifest and PEFT adapters carrying their own descriptions, train oracles for two
custom tasks from their data files, train the hypernetwork and ABMLL on that bank, generate for a new description,
`predict` with the result, merge it, and (Llama) serve it over HTTP: generate + download + `PeftModel` load. No
suite data anywhere: the built-in suite provider is never asked for a task.

The files a user brings (base model dirs, data, their PEFT adapters) are written by fixtures; every pipeline step
is the real CLI entry point, and the server is a real `loragen serve` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loragen.api.cli import main
from loragen.bank.lora import save_peft
from loragen.bank.tasks import registry
from tests._models import random_adapter, tiny_llama
from tests.e2e.conftest import free_port
from tests.unit.bank._custom import fruit_vs_vehicles, tiny_bert_dir, tiny_chat_llama_dir, write_jsonl

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WORDS = ("cat", "dog", "sun", "hat", "pen", "cup", "box", "map", "owl", "fig", "jam", "kit")


@pytest.fixture(autouse=True)
def _no_suite(monkeypatch):
    """Fail the test if anything asks the built-in suite for a task: the pipeline must not touch suite data."""
    def refuse(name: str = registry.BUILTIN, **options):
        if name == registry.BUILTIN:
            raise AssertionError("the built-in suite was asked for in a user's pipeline")
        return real(name, **options)

    real = registry.get_provider
    monkeypatch.setattr(registry, "get_provider", refuse)


def _user_adapters(root: Path, base_dir: Path, model, targets: tuple[str, ...], items: list[tuple[str, str]]) -> Path:
    """The user's own PEFT adapters, each with a `loragen.json` sidecar giving its description."""
    for i, (name, description) in enumerate(items):
        adapter = random_adapter(model, targets, r=4, seed=10 + i, base_model=os.path.relpath(base_dir, root / name))
        save_peft(adapter, root / name)
        (root / name / "loragen.json").write_text(json.dumps({"description": description}))
    return root


def _run(*argv: str) -> None:
    assert main([str(a) for a in argv]) == 0, argv


def _pipeline(tmp: Path, bank: Path, manifest: Path, adapters: Path, description: str, *, steps: int) -> Path:
    """Every CLI step up to a generated adapter; returns its directory."""
    _run("bank", "tasks", "import", manifest, "--bank", bank)
    _run("bank", "import", adapters, "--bank", bank)
    _run("bank", "train", "--bank", bank, "--steps", steps, "--no-progress", "--device", "cpu")
    _run("train", "hypernet", "--bank", bank, "-o", tmp / "cvae", "--max-steps", "4", "--accelerator", "cpu",
         "--devices", "1", "--no-progress-bar")
    _run("train", "meta", "--bank", bank, "-o", tmp / "abmll", "--max-steps", "3", "--no-progress-bar")
    _run("generate", description, "-o", tmp / "gen", "--checkpoint", tmp / "cvae", "--bank", bank)
    _run("generate", description, "-o", tmp / "gen-abmll", "--method", "abmll", "--checkpoint", tmp / "abmll",
         "--bank", bank, "--samples", "2", "--seed", "0")
    return tmp / "gen"


def test_own_causal_lm_from_manifest_to_http(tmp_path, capsys):
    base = tiny_chat_llama_dir(tmp_path / "models" / "llama")
    data = tmp_path / "data"
    write_jsonl(data / "shout.jsonl", [{"input": w, "output": w.upper()} for w in WORDS * 2])
    write_jsonl(data / "double.jsonl", [{"input": w, "output": w + w} for w in WORDS * 2])
    manifest = write_jsonl(tmp_path / "tasks.jsonl", [
        {"name": "me/shout", "description": "Repeat the word in capital letters.", "data": "data/shout.jsonl",
         "base_model": "models/llama", "paraphrases": ["Upper-case the word."]},
        {"name": "me/double", "description": "Write the word twice, with no space.", "data": "data/double.jsonl",
         "base_model": "models/llama", "paraphrases": ["Say the word two times in a row."]},
    ])
    adapters = _user_adapters(tmp_path / "adapters", base, tiny_llama(), ("q_proj", "v_proj"),
                              [("rev", "Reverse the letters of the word."), ("first", "Give the first letter.")])
    bank = tmp_path / "bank.duckdb"
    out = _pipeline(tmp_path, bank, manifest, adapters, "Write the word backwards in capitals.", steps=6)
    # a few (input, output) examples: ABMLL refines on them; the CVAE, which cannot read them, says so
    shots = write_jsonl(tmp_path / "shots.jsonl", [{"input": w, "output": w[::-1].upper()} for w in WORDS[:4]])
    _run("generate", "Write the word backwards in capitals.", "-o", tmp_path / "gen-shots", "--method", "abmll",
         "--checkpoint", tmp_path / "abmll", "--examples", shots)
    assert (tmp_path / "gen-shots" / "adapter_model.safetensors").is_file()
    capsys.readouterr()
    assert main(["generate", "Write the word backwards.", "-o", str(tmp_path / "no"), "--checkpoint",
                 str(tmp_path / "cvae"), "--examples", str(shots)]) == 1
    assert "(input, output) pairs" in capsys.readouterr().err and not (tmp_path / "no").exists()

    texts = write_jsonl(tmp_path / "inputs.jsonl", [{"text": "cat"}, {"input": "sun"}])
    capsys.readouterr()
    _run("predict", out, "--file", texts, "--json", "--max-new-tokens", "4")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["text"] for line in lines] == ["cat", "sun"] and all(isinstance(line["completion"], str)
                                                                     for line in lines)
    _run("merge", out, "-o", tmp_path / "merged")
    assert (tmp_path / "merged" / "config.json").is_file()

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LORAGEN_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "loragen.api", "serve", "--port", str(port), "--bank", str(bank),
                             "--methods", "retrieve,cvae", "--reindex-interval", "0"],
                            env={**env, "LORAGEN_CVAE_CHECKPOINT": str(tmp_path / "cvae")}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url)
        for method in ("cvae", "retrieve"):
            r = httpx.post(f"{url}/v1/adapters:generate", timeout=120, json={
                "description": "Write the word backwards in capitals.", "method": method,
                "base_model": str(base.resolve())})
            assert r.status_code == 200, r.text
            archive = httpx.get(f"{url}/v1/adapters/{r.json()['id']}/peft", timeout=60)
            assert archive.status_code == 200
            _load_with_peft(archive.content, tmp_path / f"http-{method}", base)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_own_encoder_classifier_from_manifest_to_merge(tmp_path, capsys):
    base = tiny_bert_dir(tmp_path / "models" / "bert")
    data = tmp_path / "data"
    write_jsonl(data / "fruit.jsonl", fruit_vs_vehicles(48, seed=0, named=True))
    write_jsonl(data / "vehicle.jsonl", [{"text": r["text"], "label": 1 - r["label"]}
                                         for r in fruit_vs_vehicles(48, seed=1)])
    manifest = write_jsonl(tmp_path / "tasks.jsonl", [
        {"name": "me/fruit", "description": "label 0 if the words name fruit, label 1 if they name vehicles",
         "labels": ["fruit", "vehicle"], "data": "data/fruit.jsonl", "base_model": "models/bert"},
        {"name": "me/vehicle", "description": "label 0 if the words name vehicles, label 1 if they name fruit",
         "labels": ["vehicle", "fruit"], "data": "data/vehicle.jsonl", "base_model": "models/bert"},
    ])
    from transformers import AutoModel

    model = AutoModel.from_pretrained(base)
    adapters = _user_adapters(tmp_path / "adapters", base, model, ("query", "value"),
                              [("sport", "label 0 if the text is about sport, label 1 if about politics")])
    bank = tmp_path / "bank.duckdb"
    out = _pipeline(tmp_path, bank, manifest, adapters,
                    "label 0 if the words name fruit, label 1 otherwise", steps=8)
    capsys.readouterr()
    _run("predict", out, "--text", "apple banana cherry", "--text", "truck boat car", "--json")
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows), rows
    assert all(len(r["probabilities"]) == 2 and r["label"] in r["probabilities"] for r in rows)
    _run("merge", out, "-o", tmp_path / "merged")
    assert (tmp_path / "merged" / "config.json").is_file()


def _wait_healthy(proc: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.3)


def _load_with_peft(archive: bytes, folder: Path, base: Path) -> None:
    import io
    import zipfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    zipfile.ZipFile(io.BytesIO(archive)).extractall(folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder)
    assert any("lora_A" in name for name, _ in model.named_parameters())
