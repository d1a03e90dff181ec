"""Reads are protected (issue 14, item 9): with a token set, every route but GET /healthz needs it, unless the
server explicitly opens reads. Through the real server, with plain httpx and with the SDK."""

from __future__ import annotations

import httpx
import pytest

from loragen.api import Client
from loragen.api.commands.serve import settings_from_args
from loragen.api.sdk import ClientError
from loragen.api.settings import Settings
from tests.e2e.conftest import TOKEN, copy_bank, make_settings, run_server
from tests.e2e.test_hostile import AUTH, GENERATE, assert_refused

WRONG = {"Authorization": "Bearer wrong-token-0123456789"}


@pytest.fixture(scope="module")
def some_id(server) -> str:
    return next(iter(server.service.bank.adapters())).id


def deferred_generation(url: str) -> str:
    """A score=deferred generation's id (made with the token)."""
    r = httpx.post(f"{url}/v1/adapters:generate", json=GENERATE, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.json()["scores_url"], r.text
    return r.json()["generation"]


def reads(adapter_id: str, generation: str) -> list[tuple[str, dict]]:
    """Every read route (path, query params), /healthz excepted."""
    return [("/v1/search", {"q": "Polish or Czech", "k": 2}), (f"/v1/adapters/{adapter_id}", {}),
            (f"/v1/adapters/{adapter_id}/peft", {}), (f"/v1/generations/{generation}/scores", {}), ("/metrics", {}),
            ("/docs", {}), ("/openapi.json", {})]


def test_reads_need_the_token(server, some_id):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for path, params in reads(some_id, deferred_generation(server.url)):
            assert_refused(http.get(path, params=params), 401, "unauthorized", "token")
            assert_refused(http.get(path, params=params, headers=WRONG), 403, "forbidden", "wrong")
            assert http.get(path, params=params, headers=AUTH).status_code == 200, path
        # no token: an unknown route is refused too (the guard answers before routing, so nothing is revealed)
        assert_refused(http.get("/v1/nothing-here"), 401, "unauthorized")
        assert http.head("/v1/search", params={"q": "x"}).status_code == 401
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["adapters"] >= 6


def test_the_sdk_sends_the_token_on_reads(server, some_id, tmp_path):
    with Client(url=server.url, token=TOKEN) as client:
        assert client.search("Polish or Czech", k=1).hits
        assert client.get(some_id).id == some_id
        assert (client.download(some_id, tmp_path / "a") / "adapter_model.safetensors").is_file()
    with Client(url=server.url) as client, pytest.raises(ClientError) as refused:
        client.search("Polish or Czech")
    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    with Client(url=server.url) as client:
        assert client.health().adapters >= 6  # /healthz stays open


def test_open_reads_opens_reads_only(bank_template, tmp_path):
    settings = make_settings(copy_bank(bank_template, tmp_path / "bank"), tmp_path / "merged", open_reads=True)
    serving = run_server(settings)
    server = next(serving)
    try:
        some = next(iter(server.service.bank.adapters())).id
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for path, params in reads(some, deferred_generation(server.url)):
                assert http.get(path, params=params).status_code == 200, path
            before = server.service.bank.stats()["adapters"]
            assert_refused(http.post("/v1/adapters:generate", json=GENERATE), 401, "unauthorized")
            assert_refused(http.post("/v1/adapters:generate", json=GENERATE, headers=WRONG), 403, "forbidden")
            assert_refused(http.post("/v1/bank/reindex"), 401, "unauthorized")
            assert server.service.bank.stats()["adapters"] == before
            assert http.post("/v1/adapters:generate", json=GENERATE, headers=AUTH).status_code == 200
    finally:
        serving.close()


def test_open_reads_setting_from_env_and_flag(monkeypatch):
    from loragen.api.cli import build_parser

    monkeypatch.delenv("LORAGEN_OPEN_READS", raising=False)
    monkeypatch.delenv("LORAGEN_TOKEN", raising=False)
    assert Settings().open_reads is False
    assert Settings.from_env({"LORAGEN_OPEN_READS": "1"}).open_reads is True
    assert Settings.from_env({"LORAGEN_OPEN_READS": "no"}).open_reads is False
    assert settings_from_args(build_parser().parse_args(["serve", "--open-reads"])).open_reads is True
    assert settings_from_args(build_parser().parse_args(["serve"])).open_reads is False
