"""Issue 16: the service gives every generation a trust score (by default from its `scores_url`, issue 14),
plainly uncalibrated without a trust file."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import TOKEN


def test_generate_response_has_trust_and_says_not_calibrated(server):
    r = httpx.post(f"{server.url}/v1/adapters:generate", timeout=120, headers={"Authorization": f"Bearer {TOKEN}"},
                   json={"description": "label 0 if the sentence is Polish, label 1 if it is Czech"})
    assert r.status_code == 200, r.text
    assert r.json()["trust"]["expected"] is None and "deferred: GET /v1/generations/" in r.json()["trust"]["advice"]
    scores = httpx.get(f"{server.url}{r.json()['scores_url']}", timeout=120,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert scores.status_code == 200, scores.text
    trust = scores.json()["trust"]
    assert set(trust) == {"expected", "low", "high", "calibrated", "advice"}
    assert trust["calibrated"] is False and trust["expected"] is None and trust["low"] is None
    assert trust["advice"].startswith("not calibrated for this generator (no trust file at ")
    assert "loragen trust fit --bank BANK --method retrieve" in trust["advice"]


def test_a_requests_inputs_reach_the_trust_score(bank_template, tmp_path):
    """`inputs` of a generate request feed the trust features: with a trust file whose model reads expected
    accuracy = balance_own, the score is the adapter's label balance on exactly those inputs; without inputs the
    model has nothing but its prior and the advice asks for them."""
    import numpy as np
    import pytest

    from loragen.api import Client
    from loragen.api.probe import Probe
    from loragen.api.trust import trust_path
    from loragen.bank.base_model import DEFAULT_BASE_MODEL
    from loragen.bank.store import Bank
    from loragen.bank.train.classifier import PrototypeClassifier
    from loragen.meta.trust import TrustModel
    from tests.e2e.conftest import copy_bank, make_settings, run_server

    bank = copy_bank(bank_template, tmp_path / "bank")
    balance = np.random.default_rng(0).uniform(0, 1, 40)
    TrustModel.fit([{"balance_own": float(b), "chance": 0.5} for b in balance], balance.tolist(),
                   [f"task{i}" for i in range(40)], meta={"method": "retrieve", "base_model": DEFAULT_BASE_MODEL}
                   ).save(trust_path("retrieve", None, bank))
    inputs = ["Dzień dobry, jak się masz?", "Dobrý den, jak se máš?", "Good morning", "Buenos días", "Ahoj"]
    description = "label 0 if the sentence is Polish, label 1 if it is Czech"
    for server in run_server(make_settings(bank, tmp_path / "merged")):
        with Client(url=server.url, token=TOKEN) as client:
            given = client.generate(description, inputs=inputs, seed=0)
            none = client.generate(description, seed=0)
    with Bank.open(bank) as b:
        adapter = b.get(given.id)
    want = Probe(classifier=PrototypeClassifier()).stats([adapter], inputs, 2)["balance"]
    assert abs(want - float(balance.mean())) > 0.1  # so the two cases below cannot pass by coincidence
    assert given.trust["calibrated"] and given.trust["expected"] == pytest.approx(want, abs=0.03), given.trust
    assert none.trust["expected"] == pytest.approx(float(balance.mean()), abs=0.01), none.trust
    if none.trust["expected"] < 0.7:
        assert "--inputs" in none.trust["advice"]
