"""Issue 14 (load): a generate's model-based scores (uncertainty on probe inputs, trust) are deferred by default:
the response comes at once with `scores_url`, whose GET computes them once and gives exactly what `score=inline`
puts in the response; `score=off` skips them and says so. The cheap bank signals and the stored adapter are the
same in every mode."""

from __future__ import annotations

import threading

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


def _scores(server, url: str, headers: dict | None = AUTH) -> httpx.Response:
    return httpx.get(f"{server.url}{url}", headers=headers, timeout=120)


def _unscored(out: dict) -> None:
    assert out["uncertainty"]["scored"] is False
    assert not set(MODEL_SCORES) & set(out["uncertainty"]), out["uncertainty"]
    assert out["trust"]["expected"] is None and out["trust"]["calibrated"] is False


def test_deferred_by_default_and_its_scores_are_the_inline_ones(server):
    inline = _generate(server, {**BODY, "score": "inline"})
    assert inline["scores_url"] is None and inline["uncertainty"]["scored"] is True
    assert all(inline["uncertainty"].get(k) is not None for k in MODEL_SCORES), inline["uncertainty"]
    assert inline["trust"]["advice"].startswith("not calibrated for this generator")

    deferred = _generate(server, BODY)
    _unscored(deferred)
    assert deferred["scores_url"] == f"/v1/generations/{deferred['generation']}/scores"
    assert deferred["scores_url"] in deferred["trust"]["advice"]
    assert deferred["generation"] != inline["generation"] and deferred["id"] == inline["id"]
    assert {k: deferred["uncertainty"][k] for k in BANK_SIGNALS} == {k: inline["uncertainty"][k] for k in BANK_SIGNALS}

    # two clients ask at once: computed once, both get the same scores, which are the inline ones
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(_scores(server, deferred["scores_url"])))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    first, second = (r.json() for r in answers)
    assert sorted([first["seconds"] > 0, second["seconds"] > 0]) == [False, True]  # one computed, one waited
    for got in (first, second):
        assert got["generation"] == deferred["generation"] and got["id"] == deferred["id"]
        assert got["method"] == "retrieve"
        assert got["uncertainty"] == inline["uncertainty"] and got["trust"] == inline["trust"]
    assert _scores(server, deferred["scores_url"]).json()["seconds"] == 0.0


def test_score_off_skips_model_scores_and_says_so(server):
    inline = _generate(server, {**BODY, "score": True})  # JSON true is inline
    assert inline["uncertainty"]["scored"] is True and inline["scores_url"] is None
    for body, params in (({**BODY, "score": False}, None), ({**BODY, "score": "off"}, None), (BODY, {"score": "0"}),
                         ({**BODY, "score": "inline"}, {"score": "false"})):
        quick = _generate(server, body, params)
        _unscored(quick)
        assert {k: quick["uncertainty"][k] for k in BANK_SIGNALS} == {k: inline["uncertainty"][k] for k in BANK_SIGNALS}
        assert quick["trust"]["advice"].startswith("not scored: the request asked for score=off")
        assert quick["scores_url"] is None
        assert quick["id"] == inline["id"]  # retrieval: the same bank adapter, scored or not
        assert _scores(server, f"/v1/generations/{quick['generation']}/scores").status_code == 404


def test_query_score_overrides_body_and_bad_modes_are_refused(server):
    out = _generate(server, {**BODY, "score": False}, {"score": "1"})
    assert out["uncertainty"]["scored"] is True and out["uncertainty"]["confidence"] is not None
    for body, params in (({**BODY, "score": "later"}, None), (BODY, {"score": "maybe"})):
        r = httpx.post(f"{server.url}/v1/adapters:generate", json=body, params=params, headers=AUTH, timeout=120)
        assert r.status_code == 422 and "deferred" in r.json()["error"]["message"], r.text


def test_unknown_or_dropped_generation_is_a_clear_404(server):
    r = _scores(server, "/v1/generations/0123456789abcdef/scores")
    assert r.status_code == 404, r.text
    assert "LORAGEN_DEFERRED_SCORES" in r.json()["error"]["message"] and "score=inline" in r.json()["error"]["message"]


def test_sdk_generate_scores_by_default_or_not_at_all(local_settings):
    from loragen.api.sdk import Client

    examples = [(e["text"], e["label"]) for e in BODY["examples"]]
    with Client(settings=local_settings) as client:
        scored = client.generate(BODY["description"], examples=examples)
        quick = client.generate(BODY["description"], examples=examples, score=False)
    assert scored.uncertainty["scored"] is True and scored.scores_url is None
    assert "confidence" in scored.uncertainty and scored.trust["advice"]
    assert quick.uncertainty["scored"] is False and quick.trust["advice"].startswith("not scored")
    assert "confidence" not in quick.uncertainty


def test_remote_sdk_reads_deferred_scores(server):
    from loragen.api.sdk import Client

    raw = _generate(server, BODY)
    with Client(url=server.url, token=TOKEN) as client:
        got = client.scores(raw["generation"])
        assert got.uncertainty["scored"] is True and got.id == raw["id"]
        assert client.generate(BODY["description"]).uncertainty["scored"] is True  # the SDK asks for them inline
