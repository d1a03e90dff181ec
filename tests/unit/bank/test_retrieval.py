"""RetrievalGenerator: the nearest adapter of the wanted kind, however many closer adapters of other kinds there are."""

from __future__ import annotations

import pytest

from loragen.bank.embed import default_encoder
from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.retrieval import RetrievalGenerator
from loragen.bank.store import Bank
from tests.unit.bank._bank_util import minilm_adapter

QUERY = "Decide whether a sentence is about volcanoes erupting."


@pytest.fixture(scope="module")
def crowded_bank(tmp_path_factory):
    """2 final adapters, then 110 uploaded adapters whose descriptions are all closer to QUERY than either final."""
    path = tmp_path_factory.mktemp("crowded") / "bank.duckdb"
    with Bank.open(path, encoder=default_encoder()) as bank:
        finals = [
            bank.add(minilm_adapter(seed=1, r=2, layers=(0,)), description="Decide whether a sentence is about lava."),
            bank.add(minilm_adapter(seed=2, r=2, layers=(0,)), description="Decide whether a sentence is about tax."),
        ]
        for i in range(110):
            bank.add(minilm_adapter(seed=100 + i, r=2, layers=(0,)), kind="uploaded",
                     description=f"Decide whether a sentence is about volcanoes erupting (upload {i}).")
        yield bank, finals


def test_final_adapter_is_retrieved_when_uploads_crowd_the_top_hits(crowded_bank):
    bank, finals = crowded_bank
    top = bank.search_text(QUERY, k=110)
    assert {h.id for h in top}.isdisjoint(finals)  # the 110 nearest are all uploads: a top-64 cut finds no final
    [adapter] = RetrievalGenerator(bank).generate(GenerationRequest(description=QUERY))
    assert adapter.metadata["id"] == finals[0]  # the nearer final adapter ("lava"), not the tax one
    both = RetrievalGenerator(bank).generate(GenerationRequest(description=QUERY, n_samples=3))
    assert [a.metadata["id"] for a in both] == finals  # only two final adapters exist: both, nearest first


def test_no_adapter_of_the_kind_raises_not_found(crowded_bank):
    bank, _ = crowded_bank
    with pytest.raises(NotFoundError, match="no checkpoint adapter in the bank"):
        RetrievalGenerator(bank, kinds=("checkpoint",)).generate(GenerationRequest(description=QUERY))
    uploads = RetrievalGenerator(bank, kinds=("uploaded",)).generate(GenerationRequest(description=QUERY, n_samples=2))
    assert [bank.record(a.metadata["id"]).kind for a in uploads] == ["uploaded", "uploaded"]
