"""The store behind `GET /v1/generations/{id}/scores` (api.deferred): bounded, computes each generation's scores
once even when asked concurrently, and answers an unknown generation with a 404 that says what to do."""

from __future__ import annotations

import threading
import time

import pytest

from loragen.api.deferred import DeferredScores, Pending, new_generation_id
from loragen.api.errors import ApiError
from loragen.bank.generator import GenerationRequest


def _pending(i: int) -> Pending:
    return Pending("cvae", GenerationRequest(f"label 0 if topic {i}, label 1 otherwise"), (f"id{i}",), None)


def test_scores_are_computed_once_under_concurrent_asks():
    store, calls = DeferredScores(4), []

    def compute(entry: Pending):
        calls.append(entry.ids)
        time.sleep(0.05)
        return {"scored": True}, {"expected": 0.5}

    gen = new_generation_id()
    store.add(gen, _pending(0))
    out = []
    threads = [threading.Thread(target=lambda: out.append(store.scores(gen, compute))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("id0",)]
    assert sorted(s > 0 for _, _, s in out) == [False, False, True]
    assert all(r == ({"scored": True}, {"expected": 0.5}) for _, r, _ in out)


def test_oldest_generation_is_dropped_past_capacity_and_unknown_ones_are_404():
    store = DeferredScores(2)
    ids = [new_generation_id() for _ in range(3)]
    assert len(set(ids)) == 3
    for i, gen in enumerate(ids):
        store.add(gen, _pending(i))
    assert len(store) == 2
    with pytest.raises(ApiError) as err:
        store.scores(ids[0], lambda e: ({}, {}))
    assert err.value.status == 404 and "LORAGEN_DEFERRED_SCORES" in err.value.message
    assert store.scores(ids[2], lambda e: ({}, {"from": e.ids}))[1][1] == {"from": ("id2",)}


def test_a_failed_computation_is_retried_on_the_next_ask():
    store, gen = DeferredScores(1), new_generation_id()
    store.add(gen, _pending(0))

    def boom(entry):
        raise RuntimeError("base model busy")

    with pytest.raises(RuntimeError):
        store.scores(gen, boom)
    assert store.scores(gen, lambda e: ({"ok": 1}, {}))[1] == ({"ok": 1}, {})


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        DeferredScores(0)
