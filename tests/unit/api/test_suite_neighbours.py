"""Without a bank, the trust score's neighbour features come from the built-in suite (the bank the shipped trust
files were fitted on): the nearest suite task by description and its inputs as probe texts, cached on disk."""

from __future__ import annotations

import numpy as np
import pytest

from loragen.api import suite_neighbours as sn
from loragen.api.probe import Probe
from loragen.api.trust import _suite_neighbours, features
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.embed import default_encoder
from loragen.bank.generator import GenerationRequest
from loragen.bank.tasks import BUILTIN, get_provider
from tests.e2e.conftest import minilm_adapter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("home")
        mp.setenv("LORAGEN_HOME", str(home))
        sn._neighbours.cache_clear()
        built = sn.suite_neighbours()
        cached = list(home.glob("cache/suite-neighbours-*"))
        sn._neighbours.cache_clear()  # the next call reads the files written above
        again = sn.suite_neighbours()
        sn._neighbours.cache_clear()
    return built, again, cached


def test_the_suite_is_indexed_once_and_read_back_from_the_cache(neighbours):
    built, again, cached = neighbours
    assert sorted(p.suffix for p in cached) == [".json", ".npy"], cached
    tasks = get_provider(BUILTIN).tasks()
    assert built.names == tuple(t.name for t in tasks) and built.base_model == DEFAULT_BASE_MODEL
    assert again.names == built.names and again.texts == built.texts
    np.testing.assert_array_equal(again.embeddings, built.embeddings)
    assert all(len(t) == 16 for t in built.texts)


def test_nearest_suite_task_and_its_texts(neighbours):
    built, _, _ = neighbours
    task = get_provider(BUILTIN).tasks()[7]
    sim, name = built.nearest(default_encoder().encode([task.description])[0])
    assert name == task.name and sim == pytest.approx(1.0, abs=2e-3)  # fp16 embeddings
    other = built.nearest(default_encoder().encode([task.description])[0], exclude=frozenset({task.name}))
    assert other[1] != task.name and other[0] < sim
    assert built.probe_texts(name) == tuple(x for x, _ in get_provider(BUILTIN).data(task).val[:16])
    assert built.probe_texts("no/such-task") == ()


def test_without_a_bank_the_features_use_the_suite(neighbours, monkeypatch, tmp_path):
    from loragen.bank.store import Bank
    from loragen.bank.train.classifier import PrototypeClassifier

    built, _, _ = neighbours
    request = GenerationRequest("label 0 if the sentence is Polish, 1 if Czech", base_model=DEFAULT_BASE_MODEL)
    probe = Probe(classifier=PrototypeClassifier())
    encode = lambda text: default_encoder().encode([text])[0]  # noqa: E731
    kwargs = dict(probe=probe, bank=None, encode=encode, peers={"abmll": minilm_adapter(seed=3)})
    bare = features(request, [minilm_adapter(seed=2)], **kwargs)
    with_suite = features(request, [minilm_adapter(seed=2)], neighbours=lambda: built, **kwargs)
    assert all(bare.get(f) is None for f in ("bank_similarity", "entropy_probe", "disagreement"))
    assert with_suite["bank_similarity"] > 0.5
    assert with_suite["entropy_probe"] is not None and 0 <= with_suite["disagreement"] <= 1
    # a bank without a task of this base model (a fresh in-process SDK's) goes to the suite too
    with Bank.open(tmp_path / "empty.duckdb") as empty:
        kwargs["bank"] = empty
        from_empty = features(request, [minilm_adapter(seed=2)], neighbours=lambda: built, **kwargs)
    assert from_empty["bank_similarity"] == pytest.approx(with_suite["bank_similarity"])
    assert from_empty["entropy_probe"] == pytest.approx(with_suite["entropy_probe"])
    assert from_empty["weight_similarity"] is None
    # only for the suite's base model: another encoder's request gets no suite neighbours
    monkeypatch.setattr(sn, "suite_neighbours", lambda: built)
    assert _suite_neighbours(DEFAULT_BASE_MODEL) is built and _suite_neighbours("someone/else") is None
