"""What a request no longer recomputes (issue 14, Load): a description embedded once (TextEncoder's LRU of
single-text encodes), and retrieval's kind/base-model filter read from the bank once per adapter, not per hit."""

from __future__ import annotations

import numpy as np
import pytest

from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.embed import TextEncoder
from loragen.bank.generator import GenerationRequest
from loragen.bank.retrieval import SERVICE_KINDS, RetrievalGenerator
from tests._local_models import LLAMA_TARGETS
from tests._models import random_adapter, tiny_llama
from tests.unit.bank._bank_util import minilm_adapter

QUERY = "label 0 if the review is positive, label 1 if it is negative"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(cache_size=2)


def test_a_cache_hit_is_the_same_embedding_without_running_the_model(encoder, monkeypatch):
    first = encoder.encode([QUERY])
    monkeypatch.setattr(encoder, "cache_size", 0)  # the same call with the cache off runs the model
    fresh = encoder.encode([QUERY])
    monkeypatch.setattr(encoder, "cache_size", 2)
    assert np.array_equal(first, fresh) and first.shape == (1, 384) and first.dtype == np.float32

    def no_model(*_args):
        raise AssertionError("the model ran for a cached text")

    monkeypatch.setattr(encoder, "_encode", no_model)
    again = encoder.encode([QUERY])
    assert np.array_equal(again, first)
    again[0, 0] = 42.0  # callers get their own copy: the cache is not changed through it
    assert np.array_equal(encoder.encode([QUERY]), first)


def test_the_cache_keeps_the_most_recent_texts_only(encoder):
    from loragen.bank.embed import _SMALL_BATCH

    encoder.encode(["one"])
    encoder.encode(["two"])
    encoder.encode(["one"])  # now the most recent
    encoder.encode(["three"])  # evicts "two", the least recently used
    assert list(encoder._cache) == ["one", "three"]
    batch = encoder.encode(["four", "five"])  # a few texts: cached one by one
    assert batch.shape == (2, 384) and list(encoder._cache) == ["four", "five"]
    many = [f"text {i}" for i in range(_SMALL_BATCH + 1)]  # a long list is neither cached nor served from it
    assert encoder.encode(many).shape == (len(many), 384) and list(encoder._cache) == ["four", "five"]
    with pytest.raises(ValueError, match="cache_size"):
        TextEncoder(cache_size=-1)


def test_retrieval_filters_kind_and_base_model_without_a_lookup_per_hit(tiny_llama_dir, tmp_path, monkeypatch):
    from loragen.bank.store import Bank

    llama = canonical_base_model_id(tiny_llama_dir)
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        ids = {
            "generated": bank.add(minilm_adapter(seed=1), description=QUERY, kind="generated"),
            "llama-upload": bank.add(random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(tiny_llama_dir)),
                                     description=QUERY, kind="uploaded"),
            "minilm-final": bank.add(minilm_adapter(seed=3), description="label 0 if positive, 1 if negative review",
                                     kind="final"),
        }
        bank.reindex()
        retrieval = RetrievalGenerator(bank, kinds=SERVICE_KINDS, match_base_model=True)

        def run() -> tuple[str, str, str | None]:
            [minilm] = retrieval.generate(GenerationRequest(description=QUERY, base_model=DEFAULT_BASE_MODEL))
            [mine] = retrieval.generate(GenerationRequest(description=QUERY, base_model=llama))
            return minilm.metadata["id"], mine.metadata["id"], retrieval.nearest_base_model(QUERY)

        first = run()
        assert first == (ids["minilm-final"], ids["llama-upload"], llama)  # the nearer generated one is skipped
        looked_up = []
        real_record = bank.record
        monkeypatch.setattr(bank, "record", lambda i: looked_up.append(i) or real_record(i))
        assert run() == first
        assert looked_up == []  # every hit's kind and base model came from the generator's memory
