"""The bank features of the trust score compare with the bank's trained (final) adapters only: a service stores
what it generates, and a stored copy of the very adapter being scored must not read as a perfect neighbour."""

from __future__ import annotations

import pytest

from loragen.api.trust import features
from loragen.bank.generator import GenerationRequest
from loragen.bank.records import TaskRecord
from loragen.bank.store import Bank
from tests.e2e.conftest import minilm_adapter


def test_weight_similarity_ignores_generated_copies(tmp_path):
    final, scored = minilm_adapter(seed=1), minilm_adapter(seed=2)
    request = GenerationRequest("label 0 if the text is Polish, label 1 if it is Czech")
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="lang/pl-vs-cs", description=request.description, labels=("pl", "cs")))
        bank.add(final, task="lang/pl-vs-cs", description=request.description, kind="final", source="test")
        bank.reindex()
        before = features(request, [scored], probe=None, bank=bank)["weight_similarity"]
        bank.add(scored, description=request.description, kind="generated", source="test")  # the service stores it
        bank.reindex()
        after = features(request, [scored], probe=None, bank=bank)["weight_similarity"]
        assert bank.search_adapter(scored, k=1)[0].score == pytest.approx(1.0, abs=1e-4)  # the copy is there
    assert after == pytest.approx(before) and before < 0.9
