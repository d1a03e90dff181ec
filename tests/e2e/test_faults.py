"""Faults around the real server (uvicorn on loopback, plain httpx): a full disk, an unexpected exception, a
predecessor killed mid-upload, and server paths in responses."""

from __future__ import annotations

import builtins
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, Request

from loragen.api import archive
from loragen.api.app import create_app
from loragen.bank.lora import save_peft
from tests.e2e.conftest import copy_bank, make_settings, minilm_adapter, run_server
from tests.e2e.test_hostile import AUTH, assert_refused, snapshot, upload

DEV_FULL = Path("/dev/full")  # every write to it fails with ENOSPC: a real full disk, safely
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")


@pytest.fixture(scope="module")
def fresh_zip(tmp_path_factory) -> bytes:
    return archive.pack(save_peft(minilm_adapter(seed=700), tmp_path_factory.mktemp("fresh") / "adapter"))


# ---- a full disk ---------------------------------------------------------------------------------------------

@needs_dev_full
def test_disk_full_at_commit_is_507_and_stores_nothing(bank_template, tmp_path, fresh_zip):
    """No mock: the bank's write-ahead log is a symlink to /dev/full, so DuckDB's real commit fails with the real
    ENOSPC ("No space left on device") inside the real server, exactly as on a full disk."""
    from loragen.bank.store import Bank

    bank_path = copy_bank(bank_template, tmp_path / "bank")
    wal = Path(f"{bank_path}.wal")
    serving = run_server(make_settings(bank_path, tmp_path / "merged"))
    server = next(serving)
    try:
        assert not wal.exists()  # DuckDB creates its log on the first write
        wal.symlink_to(DEV_FULL)
        before = snapshot(server)
        with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as http:
            response = upload(http, fresh_zip)
            assert_refused(response, 507, "insufficient_storage", "disk space")
            assert "nothing was stored" in response.text and str(bank_path) not in response.text
            assert snapshot(server) == before
    finally:
        serving.close()
        wal.unlink(missing_ok=True)  # before anything reads it: /dev/full reads as endless zeros
    with Bank.open(bank_path) as bank:  # committed state on disk: the adapter is not there, the rest is intact
        assert [(r.id, r.sha256) for r in bank.adapters()] == list(before[0])


@needs_dev_full
def test_full_temp_dir_is_507_not_the_clients_fault(server, tmp_path, monkeypatch, fresh_zip):
    """Test-only injection: a full temp folder cannot be made safely on a shared machine (no small tmpfs here), so
    for this test the extractor's `open` of each new file opens /dev/full instead: the server's real upload path
    runs, and the write fails with a real ENOSPC from a real write. It was a 400 bad_archive, blaming the client."""
    real_open = builtins.open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        return real_open(DEV_FULL, "wb") if mode == "xb" else real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(archive, "open", open_on_full_disk, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the server's scratch folders land here
    before = snapshot(server)
    with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as http:
        assert_refused(upload(http, fresh_zip), 507, "insufficient_storage", "disk space")
    assert snapshot(server) == before
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone too


# ---- an unexpected exception ----------------------------------------------------------------------------------

def _explode() -> None:
    raise RuntimeError("a bug in a route dependency at /secret/path")


@pytest.fixture(scope="module")
def test_app_server(bank_template, tmp_path_factory):
    """The real app from the factory plus two test-only routes: one whose dependency raises (a server bug), one
    that reports the client's port (the same port means the same TCP connection). The CVAE is enabled with a
    checkpoint that does not exist, so /healthz has a reason that names a server path."""
    root = tmp_path_factory.mktemp("faults")
    settings = make_settings(copy_bank(bank_template, root / "bank"), root / "merged", methods=("retrieve", "cvae"),
                             cvae_checkpoint=root / "no-such-checkpoint")
    app = create_app(settings=settings)

    @app.get("/test/boom", dependencies=[Depends(_explode)])
    async def boom() -> dict:
        return {}

    @app.get("/test/port")
    async def port(request: Request) -> dict:
        return {"port": request.client.port}

    yield from run_server(settings, app=app)


def test_a_500_is_json_and_the_connection_stays_usable(test_app_server):
    """The catch-all used to let Starlette re-raise after answering; uvicorn then closed the keep-alive
    connection, so the client's next request on it failed."""
    with httpx.Client(base_url=test_app_server.url, timeout=60, headers=AUTH) as http:
        first = http.get("/test/port").json()["port"]
        for _ in range(2):
            response = http.get("/test/boom")
            assert response.status_code == 500
            assert response.json() == {"error": {"status": 500, "code": "internal", "message":
                                                 "internal server error; the server log has the details."}}
            after = http.get("/test/port")
            assert after.status_code == 200 and after.json()["port"] == first  # same connection, still open
        metrics = http.get("/metrics").text
    assert 'loragen_http_requests_total{method="GET",route="/test/boom",status="500"} 2.0' in metrics


# ---- a predecessor killed mid-upload ---------------------------------------------------------------------------

_HOLD_A_SCRATCH_DIR = """
import sys, time
from loragen.api.scratch import make_scratch_dir
d = make_scratch_dir("upload", sys.argv[1])
(d / "adapter").mkdir()
(d / "adapter" / "adapter_model.safetensors").write_bytes(b"x" * 1000)
print(d, flush=True)
time.sleep(120)
"""


def test_stale_upload_dirs_are_swept_at_start(bank_template, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # A real process that is SIGKILLed while it holds an upload folder, as a server mid-upload would be.
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_A_SCRATCH_DIR, str(scratch)], stdout=subprocess.PIPE,
                            text=True)
    killed = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert killed.name.startswith(f"loragen-upload-{proc.pid}-") and killed.is_dir()

    hour_ago = time.time() - 3600
    old = scratch / "loragen-upload-1-old"  # pid 1 is alive, but no upload takes an hour
    legacy = scratch / "loragen-upload-abc123"  # the old naming, without a pid
    for path in (old, legacy):
        path.mkdir()
        os.utime(path, (hour_ago, hour_ago))
    live = scratch / f"loragen-upload-{os.getpid()}-inflight"  # a live process's fresh upload
    live.mkdir()
    foreign = scratch / "loragen-uploaded-thing"  # not ours
    foreign.mkdir()
    os.utime(foreign, (hour_ago, hour_ago))
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    link = scratch / f"loragen-upload-{proc.pid}-link"  # a symlink is never followed
    link.symlink_to(outside)

    settings = make_settings(copy_bank(bank_template, tmp_path / "bank"), tmp_path / "merged")
    serving = run_server(settings)
    next(serving)
    serving.close()
    assert not killed.exists() and not old.exists() and not legacy.exists()
    assert live.is_dir() and foreign.is_dir() and (outside / "keep.txt").read_text() == "keep me"


# ---- server paths stay out of responses ------------------------------------------------------------------------

def test_server_paths_stay_out_of_responses(test_app_server, tmp_path):
    settings = test_app_server.settings
    secrets = [str(settings.bank_path.parent), str(settings.merge_root.parent), tempfile.gettempdir() + "/",
               str(Path.home()) + "/"]
    reason = test_app_server.service.health().unavailable["cvae"]
    assert str(settings.cvae_checkpoint) in reason  # the server knows (and logs) where; the client is not told

    with httpx.Client(base_url=test_app_server.url, timeout=60, headers=AUTH) as http:
        health = http.get("/healthz")
        missing = http.get("/v1/adapters/no-such-id")
        pickle_dir = save_peft(minilm_adapter(seed=701), tmp_path / "a")
        (pickle_dir / "adapter_model.safetensors").write_bytes(b"\x80\x04K\x01." * 10)
        bad_upload = upload(http, archive.pack(pickle_dir))
        boom = http.get("/test/boom")
    assert health.status_code == 200 and "cvae" in health.json()["unavailable"]
    assert_refused(missing, 404, "not_found", "no-such-id")
    assert_refused(bad_upload, 422, "bad_adapter_format", "adapter_model.safetensors: not a readable safetensors")
    for response in (health, missing, bad_upload, boom):
        leaked = [s for s in secrets if s in response.text]
        assert not leaked and "loragen-upload-" not in response.text, (leaked, response.text)
        assert "/secret/path" not in response.text
