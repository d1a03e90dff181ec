"""Issue 14 (load): `score: false` / `?score=0` skips the model-based uncertainty and trust scores of a generate,
and says so; the cheap bank signals and the stored adapter are those of the scored request."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"description": "label 0 if the sentence is Polish, label 1 if it is Czech",
        "examples": [{"text": "Dzień dobry, jak się masz?", "label": 0}, {"text": "Dobrý den, jak se máš?", "label": 1},
                     {"text": "Dziękuję bardzo", "label": 0}, {"text": "Děkuji pěkně", "label": 1}]}
MODEL_SCORES = ("predictive_entropy", "mutual_information", "confidence", "max_prob")
BANK_SIGNALS = ("nearest_task_similarity", "nearest_task", "description_similarity")


def _generate(server, body: dict, params: dict | None = None) -> dict:
    r = httpx.post(f"{server.url}/v1/adapters:generate", json=body, params=params, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def test_score_false_skips_model_scores_and_says_so(server):
    scored = _generate(server, BODY)
    assert scored["uncertainty"]["scored"] is True
    assert all(scored["uncertainty"].get(k) is not None for k in MODEL_SCORES), scored["uncertainty"]
    assert scored["trust"]["advice"].startswith("not calibrated for this generator")

    for body, params in (({**BODY, "score": False}, None), (BODY, {"score": "0"}), ({**BODY, "score": True},
                                                                                    {"score": "false"})):
        quick = _generate(server, body, params)
        assert quick["uncertainty"]["scored"] is False
        assert not set(MODEL_SCORES) & set(quick["uncertainty"]), quick["uncertainty"]
        assert {k: quick["uncertainty"][k] for k in BANK_SIGNALS} == {k: scored["uncertainty"][k] for k in BANK_SIGNALS}
        assert quick["trust"] == {"expected": None, "low": None, "high": None, "calibrated": False,
                                  "advice": "not scored: the request asked for score=false (send score=true for the "
                                            "trust score)"}
        assert quick["id"] == scored["id"]  # retrieval: the same bank adapter, scored or not


def test_query_score_true_overrides_body(server):
    out = _generate(server, {**BODY, "score": False}, {"score": "1"})
    assert out["uncertainty"]["scored"] is True and out["uncertainty"]["confidence"] is not None


def test_sdk_generate_score_false(local_settings):
    from loragen.api.sdk import Client

    with Client(settings=local_settings) as client:
        out = client.generate(BODY["description"], examples=[(e["text"], e["label"]) for e in BODY["examples"]],
                              score=False)
    assert out.uncertainty["scored"] is False and out.trust["advice"].startswith("not scored")
    assert "confidence" not in out.uncertainty
