"""The CLI's and the service's `retrieve`: the nearest final or uploaded adapter for the request's base model; never a
generated one (every generation is stored) nor one of a held-out task."""

from __future__ import annotations

import pytest

from loragen.bank.retrieval import SERVICE_KINDS, RetrievalGenerator
from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.records import TaskRecord
from tests._local_models import LLAMA_TARGETS
from tests._models import random_adapter, tiny_llama
from tests.unit.bank._bank_util import minilm_adapter

QUERY = "label 0 if the review is positive, label 1 if it is negative"


def test_nearest_final_or_uploaded_adapter_of_the_base_model(tiny_llama_dir, tmp_path):
    from loragen.bank.store import Bank

    llama = canonical_base_model_id(tiny_llama_dir)
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="held/out", description=QUERY, labels=("pos", "neg"), split="heldout"))
        ids = {
            "generated": bank.add(minilm_adapter(seed=1), description=QUERY, kind="generated"),
            "heldout": bank.add(minilm_adapter(seed=2), task="held/out", description=QUERY, kind="final"),
            "llama-upload": bank.add(random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(tiny_llama_dir)),
                                     description=QUERY, kind="uploaded"),
            "minilm-final": bank.add(minilm_adapter(seed=3), description="label 0 if positive, 1 if negative review",
                                     kind="final"),
            "far": bank.add(minilm_adapter(seed=4), description="is the text about volcanoes?", kind="final"),
        }
        bank.reindex()
        retrieval = RetrievalGenerator(bank, kinds=SERVICE_KINDS, match_base_model=True)
        [minilm] = retrieval.generate(GenerationRequest(description=QUERY, base_model=DEFAULT_BASE_MODEL))
        assert minilm.metadata["id"] == ids["minilm-final"]  # nearer generated and held-out adapters are skipped
        [mine] = retrieval.generate(GenerationRequest(description=QUERY, base_model=llama))
        assert mine.metadata["id"] == ids["llama-upload"] and mine.base_model == llama
        assert retrieval.nearest_base_model(QUERY) == llama  # the nearest candidate of any base model
        both = retrieval.generate(GenerationRequest(description=QUERY, base_model=DEFAULT_BASE_MODEL, n_samples=3))
        assert [a.metadata["id"] for a in both] == [ids["minilm-final"], ids["far"]]  # all there are
        with pytest.raises(NotFoundError, match="no final or uploaded adapter for base model"):
            retrieval.generate(GenerationRequest(description=QUERY, base_model=str(tmp_path / "other")))
