"""Hostile requests against the real server with plain httpx: each gets a clear 4xx and changes nothing."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from loragen.api.archive import pack
from loragen.bank.lora import save_peft
from tests._models import random_adapter, tiny_llama
from tests.e2e.conftest import TOKEN, minilm_adapter

AUTH = {"Authorization": f"Bearer {TOKEN}"}
GENERATE = {"description": "label 0 if the sentence is Polish, label 1 if it is Czech", "method": "retrieve"}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def adapter_zip(tmp_path_factory) -> bytes:
    return pack(save_peft(minilm_adapter(seed=500), tmp_path_factory.mktemp("ok") / "adapter"))


def snapshot(server) -> tuple:
    """Everything a request could change: the bank's adapters and the merge root's contents."""
    bank = server.service.bank
    adapters = tuple((r.id, r.sha256) for r in bank.adapters())
    root = server.settings.merge_root
    files = tuple(sorted(str(p) for p in root.rglob("*"))) if root.exists() else ()
    return adapters, files, bank.stats()["adapters"]


def assert_refused(response: httpx.Response, status: int, code: str, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["code"] == code, error
    assert words.lower() in error["message"].lower(), error["message"]


def zip_of(members: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def upload(http, archive: bytes, headers=AUTH, description: str = "some adapter") -> httpx.Response:
    return http.post("/v1/adapters", headers=headers, data={"description": description},
                     files={"archive": ("a.zip", archive, "application/zip")})


def test_writes_need_the_right_token(http, server, adapter_zip):
    before = snapshot(server)
    assert_refused(http.post("/v1/adapters:generate", json=GENERATE), 401, "unauthorized", "token")
    assert_refused(http.post("/v1/adapters:generate", json=GENERATE, headers={"Authorization": "Bearer nope"}),
                   403, "forbidden", "wrong")
    assert_refused(upload(http, adapter_zip, headers={}), 401, "unauthorized")
    assert_refused(http.post("/v1/bank/reindex", headers={"Authorization": "Basic " + TOKEN}), 403, "forbidden")
    assert_refused(http.post("/v1/merge", json={"adapter_ids": ["x"], "output": "m"}), 401, "unauthorized")
    assert snapshot(server) == before
    assert http.get("/healthz").status_code == 200  # reads need no token


def test_oversized_bodies_are_refused(http, server):
    before = snapshot(server)
    big = {**GENERATE, "description": "x" * (server.settings.max_request_bytes + 10)}
    assert_refused(http.post("/v1/adapters:generate", json=big, headers=AUTH), 413, "too_large")

    def chunks():  # no Content-Length: the limit is enforced on the streamed bytes
        for _ in range(200):
            yield b" " * 1024

    assert_refused(http.post("/v1/adapters:generate", content=chunks(), headers={**AUTH, "Content-Type":
                                                                                 "application/json"}),
                   413, "too_large")
    huge = zip_of({"adapter_config.json": b"{}", "adapter_model.safetensors": torch.randn(800_000).numpy().tobytes()})
    assert_refused(upload(http, huge), 413, "too_large")
    assert snapshot(server) == before


def test_malformed_json_and_invalid_fields(http, server):
    before = snapshot(server)
    headers = {**AUTH, "Content-Type": "application/json"}
    assert_refused(http.post("/v1/adapters:generate", content=b'{"description": "x",', headers=headers),
                   400, "malformed_json", "not valid JSON")
    assert_refused(http.post("/v1/adapters:generate", json={**GENERATE, "method": "magic"}, headers=AUTH),
                   422, "invalid_request", "method")
    assert_refused(http.post("/v1/adapters:generate", json={**GENERATE, "samples": 0}, headers=AUTH),
                   422, "invalid_request", "samples")
    assert_refused(http.post("/v1/merge", json={"adapter_ids": ["x"], "output": "../escape"}, headers=AUTH),
                   422, "invalid_request", "output")
    assert_refused(http.get("/v1/search", params={"q": "", "k": 3}), 422, "invalid_request")
    assert snapshot(server) == before


@pytest.mark.parametrize(
    ("members", "links", "words"),
    [
        ({"../evil.json": b"{}"}, (), "'..'"),
        ({"/etc/evil.json": b"{}"}, (), "absolute"),
        ({"a\\..\\evil.json": b"{}"}, (), "backslash"),
        ({"adapter_config.json": b"{}", "link.json": b"/etc/passwd"}, ("link.json",), "symlink"),
        ({"adapter_config.json": b"{}", "adapter_model.bin": b"\x80\x04K\x01."}, (), "pickle"),
        ({"adapter_config.json": b"{}", "bomb.json": b"\x00" * 1_500_000}, (), "compression bomb"),
    ],
    ids=["dotdot", "absolute", "backslash", "symlink", "bin-pickle", "zip-bomb"],
)
def test_unsafe_archives_are_refused(http, server, tmp_path, members, links, words):
    before = snapshot(server)
    assert_refused(upload(http, zip_of(members, links=links)), 400, "bad_archive", words)
    assert snapshot(server) == before
    assert not (server.settings.bank_path.parent.parent / "evil.json").exists()


def test_not_a_zip(http, server):
    before = snapshot(server)
    assert_refused(upload(http, b"PK\x03\x04 definitely not a zip"), 400, "bad_archive", "zip")
    assert snapshot(server) == before


def test_pickle_posing_as_safetensors(http, server, tmp_path):
    before = snapshot(server)
    good = save_peft(minilm_adapter(seed=501), tmp_path / "a")
    buf = io.BytesIO()
    torch.save({"base_model.model.x.lora_A.weight": torch.zeros(2, 2)}, buf)  # a pickle with a .safetensors name
    (good / "adapter_model.safetensors").write_bytes(buf.getvalue())
    assert_refused(upload(http, pack(good)), 422, "bad_adapter_format", "safetensors")
    assert snapshot(server) == before


def test_adapter_for_another_base_model(http, server, tmp_path):
    before = snapshot(server)
    llama = random_adapter(tiny_llama(), ("q_proj", "v_proj"), base_model="meta-llama/Llama-2-7b-hf")
    assert_refused(upload(http, pack(save_peft(llama, tmp_path / "llama"))), 422, "unknown_base_model",
                   "base model")
    # claims MiniLM but its shapes are another model's
    wrong = minilm_adapter(seed=502, in_features=512)
    assert_refused(upload(http, pack(save_peft(wrong, tmp_path / "wrong"))), 422, "bad_adapter_shape")
    assert snapshot(server) == before


def test_merge_stays_under_the_root_and_checks_ids(http, server):
    before = snapshot(server)
    some_id = server.service.bank.adapters()[0].id
    assert_refused(http.post("/v1/merge", json={"adapter_ids": ["missing"], "output": "m1"}, headers=AUTH),
                   404, "not_found")
    assert_refused(http.post("/v1/merge", json={"adapter_ids": [some_id], "output": ".."}, headers=AUTH),
                   422, "invalid_request")
    assert_refused(http.post("/v1/merge", json={"adapter_ids": [some_id], "output": "/tmp/x"}, headers=AUTH),
                   422, "invalid_request")
    assert snapshot(server) == before


def test_errors_are_json_and_unknown_routes_404(http):
    assert_refused(http.get("/v1/adapters/does-not-exist"), 404, "not_found", "does-not-exist")
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["status"] == 404


def test_metrics_and_openapi(http, server):
    http.get("/healthz")
    text = http.get("/metrics").text
    assert 'loragen_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert f"loragen_bank_adapters {float(server.service.health().adapters)}" in text
    saved = json.loads((Path(__file__).parent / "openapi.json").read_text())
    assert http.get("/openapi.json").json() == saved, (
        "the served OpenAPI schema changed; if intended, regenerate tests/e2e/openapi.json with "
        "`python -m tests.e2e.update_openapi`")
