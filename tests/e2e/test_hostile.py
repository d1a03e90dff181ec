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
    """A client that sends the token with every request (reads need it too)."""
    with httpx.Client(base_url=server.url, timeout=120, headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def anon(server):
    """A client without a token."""
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


def test_writes_need_the_right_token(http, anon, server, adapter_zip):
    before = snapshot(server)
    assert_refused(anon.post("/v1/adapters:generate", json=GENERATE), 401, "unauthorized", "token")
    assert_refused(http.post("/v1/adapters:generate", json=GENERATE, headers={"Authorization": "Bearer nope"}),
                   403, "forbidden", "wrong")
    assert_refused(upload(anon, adapter_zip, headers={}), 401, "unauthorized")
    assert_refused(http.post("/v1/bank/reindex", headers={"Authorization": "Basic " + TOKEN}), 403, "forbidden")
    assert_refused(anon.post("/v1/merge", json={"adapter_ids": ["x"], "output": "m"}), 401, "unauthorized")
    assert snapshot(server) == before
    assert anon.get("/healthz").status_code == 200  # the one route without a token


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


# ---- uploads whose config, weights or header lie (issue 14) ----------------------------------------------------

def _saved(tmp_path, seed: int, r: int = 4) -> Path:
    return save_peft(minilm_adapter(seed=seed, r=r), tmp_path / f"a{seed}")


def _edit_config(directory: Path, raw: dict[str, str] | None = None, **changes) -> Path:
    """Rewrite adapter_config.json with `changes`, and `raw` values spliced in as JSON text (NaN, 1e999, ...)."""
    config = json.loads((directory / "adapter_config.json").read_text())
    config.update(changes)
    config.update({k: f"@@{k}@@" for k in raw or {}})
    text = json.dumps(config)
    for k, v in (raw or {}).items():
        text = text.replace(f'"@@{k}@@"', v)
    (directory / "adapter_config.json").write_text(text)
    return directory


def _rewrite_weights(directory: Path, tensors=None, metadata=None) -> Path:
    from safetensors.torch import load_file, save_file

    weights = directory / "adapter_model.safetensors"
    save_file(tensors if tensors is not None else load_file(weights), weights, metadata=metadata)
    return directory


@pytest.mark.parametrize("targets", [["foo", "bar"], ["query"], ["query", "value", "key"]],
                         ids=["none-match", "missing-value", "extra-key"])
def test_config_targets_must_match_the_weights(http, server, tmp_path, targets):
    """A config naming modules the weights are not for was stored and only failed at PeftModel.from_pretrained."""
    before = snapshot(server)
    directory = _edit_config(_saved(tmp_path, 510), target_modules=targets)
    assert_refused(upload(http, pack(directory)), 422, "bad_adapter_format", "target_modules do not match")
    assert snapshot(server) == before


@pytest.mark.parametrize("alpha", ["NaN", "Infinity", "-Infinity", "1e999", "1e308", "1e7", "0", "-8", '"8"',
                                   "true", "null"])
def test_lora_alpha_must_be_a_sane_number(http, server, tmp_path, alpha):
    """NaN/Inf made the SVD fail (500); 1e308 was stored as an all-zero adapter (201)."""
    before = snapshot(server)
    directory = _edit_config(_saved(tmp_path, 511), raw={"lora_alpha": alpha})
    assert_refused(upload(http, pack(directory)), 422, "bad_adapter_format", "lora_alpha")
    assert snapshot(server) == before


def test_a_scaled_delta_that_overflows_is_refused(http, server, tmp_path):
    before = snapshot(server)
    huge = {k: torch.full_like(v, 3e38) for k, v in _load(_saved(tmp_path, 512)).items()}  # finite float32
    directory = _edit_config(_rewrite_weights(tmp_path / "a512", huge), lora_alpha=1e6)
    assert_refused(upload(http, pack(directory)), 422, "non_finite", "overflows")
    assert snapshot(server) == before


def _load(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(directory / "adapter_model.safetensors")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8])
def test_weights_must_be_floating_point(http, server, tmp_path, dtype):
    before = snapshot(server)
    directory = _saved(tmp_path, 513)
    _rewrite_weights(directory, {k: (v * 100).to(dtype) for k, v in _load(directory).items()})
    assert_refused(upload(http, pack(directory)), 422, "bad_adapter_format", "float32")
    assert snapshot(server) == before


@pytest.mark.parametrize(("header", "words"), [
    ("[1, 2]", "not an object"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper"),
    ('{"a":' * 100 + "1" + "}" * 100, "nested deeper"),
    ("{not json", "not valid JSON"),
    ('{"note": "\\ud800"}', "not valid Unicode"),
], ids=["list", "deep-list", "deep-object", "not-json", "surrogate"])
def test_header_metadata_must_be_a_small_json_object(http, server, tmp_path, header, words):
    """A list made `setdefault` fail and 100k nesting a RecursionError: both were 500s."""
    before = snapshot(server)
    directory = _edit_config(_saved(tmp_path, 514), task_type="SEQ_CLS")
    _rewrite_weights(directory, metadata={"loragen": header})
    assert_refused(upload(http, pack(directory)), 422, "bad_adapter_format", words)
    assert snapshot(server) == before


def test_lone_surrogates_are_refused_in_every_text_field(http, server, tmp_path):
    """A lone surrogate reached the tokenizer (500); every JSON string field is checked before any route runs."""
    before = snapshot(server)
    headers = {**AUTH, "Content-Type": "application/json"}
    bodies = {
        "/v1/predict": b'{"texts": ["fine", "bad \\ud800 text"]}',
        "/v1/adapters:generate": b'{"description": "label 0 if Polish", "labels": ["\\udfff", "b"]}',
        "/v1/merge": b'{"adapter_ids": ["\\ud800"], "output": "m-surrogate"}',
    }
    for path, body in bodies.items():
        response = http.post(path, content=body, headers=headers)
        assert_refused(response, 422, "invalid_request", "lone surrogate")
    response = http.post("/v1/predict", content=b'{"texts": ["ok \\ud83d\\ude00"]}', headers=headers)
    assert response.status_code == 200, response.text  # a surrogate *pair* is just an emoji
    # ... and in an uploaded config: refused, with a message that is still valid UTF-8 JSON
    directory = _edit_config(_saved(tmp_path, 515), raw={"base_model_name_or_path": '"x\\ud800"'})
    assert_refused(upload(http, pack(directory)), 422, "bad_adapter_format", "not valid Unicode")
    assert snapshot(server) == before


@pytest.mark.parametrize(("field", "value"), [("task", "t" * 201), ("task", "two\nlines"),
                                              ("description", "d" * 2001)])
def test_task_and_description_are_limited(http, server, adapter_zip, field, value):
    """A 900 KB task name was stored and came back in every search hit."""
    before = snapshot(server)
    response = http.post("/v1/adapters", headers=AUTH, data={"description": "some adapter", field: value},
                         files={"archive": ("a.zip", adapter_zip, "application/zip")})
    assert_refused(response, 422, "invalid_request", field)
    assert snapshot(server) == before


def test_an_upload_cannot_claim_kind_or_provenance(http, server, tmp_path):
    directory = _edit_config(_saved(tmp_path, 516), task_type="SEQ_CLS")
    claims = {"kind": "final", "provenance": {"method": "cvae"}, "metrics": {"accuracy": 1.0}, "id": "x"}
    _rewrite_weights(directory, metadata={"loragen": json.dumps(claims)})
    response = upload(http, pack(directory), description="an adapter with claims in its header")
    assert response.status_code == 201, response.text
    info = http.get(f"/v1/adapters/{response.json()['id']}").json()
    assert info["kind"] == "uploaded" and info["source"] == "upload" and info["metrics"] == {}
    assert not set(claims) & set(info["metadata"]), info["metadata"]
    assert info["metadata"]["peft"] == {"task_type": "SEQ_CLS"}  # PEFT's own field is kept for the download
