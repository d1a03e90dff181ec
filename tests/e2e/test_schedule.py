"""The service re-indexes its bank on the configured schedule while it serves."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import TOKEN, copy_bank, make_settings, minilm_adapter, run_server


def test_scheduled_reindex_runs_in_the_service(bank_template, tmp_path):
    settings = make_settings(copy_bank(bank_template, tmp_path / "bank"), tmp_path / "merged", reindex_interval_s=0.5)
    server = run_server(settings)
    srv = next(server)
    try:
        bank = srv.service.bank
        version = bank.stats()["indexes"]["text"]["version"]
        bank.add(minilm_adapter(seed=900), description="label 0 if the word is a fruit, label 1 if a vegetable")
        deadline = time.monotonic() + 30
        while True:  # the new adapter sits in the delta until a scheduled run folds it into a new index version
            text = bank.stats()["indexes"]["text"]
            if text["delta"] == 0 and text["version"] > version:
                break
            assert time.monotonic() < deadline, f"no scheduled re-index within 30 s: {text}"
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        hits = httpx.get(f"{srv.url}/v1/search", params={"q": "fruit or vegetable", "k": 1}, headers=auth)
        hits = hits.json()["hits"]
        assert hits[0]["description"].startswith("label 0 if the word is a fruit")
        assert httpx.post(f"{srv.url}/v1/bank/reindex", headers=auth).status_code == 200
        assert 'loragen_reindex_total{trigger="request"} 1.0' in httpx.get(f"{srv.url}/metrics", headers=auth).text
    finally:
        server.close()
