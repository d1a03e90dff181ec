"""Issue 16: the service's generate response carries the trust score, plainly uncalibrated without a trust file."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import TOKEN


def test_generate_response_has_trust_and_says_not_calibrated(server):
    r = httpx.post(f"{server.url}/v1/adapters:generate", timeout=120, headers={"Authorization": f"Bearer {TOKEN}"},
                   json={"description": "label 0 if the sentence is Polish, label 1 if it is Czech"})
    assert r.status_code == 200, r.text
    trust = r.json()["trust"]
    assert set(trust) == {"expected", "low", "high", "calibrated", "advice"}
    assert trust["calibrated"] is False and trust["expected"] is None and trust["low"] is None
    assert trust["advice"].startswith("not calibrated for this generator (no trust file at ")
    assert "loragen trust fit --bank BANK --method retrieve" in trust["advice"]
