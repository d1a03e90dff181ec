"""`loragen serve` as a real subprocess, and `loragen predict` on a downloaded adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from loragen.api import Client
from loragen.bank.lora import save_peft
from tests.e2e.conftest import TOKEN, copy_bank, free_port, minilm_adapter

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "LORAGEN_HOME": str(tmp_path / "home")}


def test_serve_subprocess_and_predict(bank_template, tmp_path):
    bank = copy_bank(bank_template, tmp_path / "bank")
    port = free_port()
    env = {**_env(tmp_path), "LORAGEN_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "loragen.api", "serve", "--port", str(port), "--bank", str(bank),
                             "--methods", "retrieve", "--reindex-interval", "0"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        with Client(url=url, token=TOKEN) as client:
            result = client.generate("label 0 if the text names a person, label 1 if it names a city")
            adapter_dir = client.download(result.id, tmp_path / "adapter")
            fresh = save_peft(minilm_adapter(seed=77), tmp_path / "fresh")
            client.upload(fresh, description="label 0 if the text is a question, label 1 otherwise")  # a write
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says how it ended
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application startup complete" in output and "Application shutdown complete" in output
    # the service closed the bank on SIGTERM: DuckDB folded the upload's write-ahead log into the file
    assert not bank.with_name(bank.name + ".wal").exists(), output

    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "Maria Kowalska"}\n"Kraków"\n')
    out = subprocess.run([sys.executable, "-m", "loragen.api", "predict", str(adapter_dir), "--file", str(texts), "--json",
                          "--labels", "person,city"],
                         env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["Maria Kowalska", "Kraków"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)

    bad = subprocess.run([sys.executable, "-m", "loragen.api", "predict", str(tmp_path / "nope"), "--text", "x"],
                         env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not a directory" in bad.stderr
