"""`api.scores`: the service's trust score compares with its other generators (peers, each behind its method's
lock), so `disagreement`, which calibration always had, is there when the service scores."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from loragen.api.base_models import BaseModels
from loragen.api.scores import LockedGenerator, trust
from loragen.api.probe import Probe
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.generator import GenerationRequest
from loragen.bank.retrieval import SERVICE_KINDS, RetrievalGenerator
from loragen.bank.store import Bank
from loragen.meta.trust import TrustModel
from tests.e2e.conftest import copy_bank, minilm_adapter

INPUTS = ["Dzień dobry, jak się masz?", "Dobrý den, jak se máš?", "Good morning", "Buenos días", "Ahoj", "Cześć",
          "Na shledanou", "Do widzenia"]


def test_the_trust_score_measures_disagreement_with_the_services_other_generators(bank_template, tmp_path):
    ckpt = tmp_path / "cvae"
    d = np.random.default_rng(0).uniform(0, 0.4, 40)  # a trust model that reads: expected = 1 - disagreement
    TrustModel.fit([{"disagreement": float(v), "chance": 0.5} for v in d], (1 - d).tolist(),
                   [f"task{i}" for i in range(40)], meta={"method": "cvae", "base_model": DEFAULT_BASE_MODEL}
                   ).save(ckpt / "trust.json")
    scored = minilm_adapter(seed=11, scale=0.3)
    request = GenerationRequest("label 0 if the sentence is Polish, label 1 if it is Czech",
                                base_model=DEFAULT_BASE_MODEL)
    models = BaseModels("cpu")
    with Bank.open(copy_bank(bank_template, tmp_path / "bank")) as bank:
        retrieve = RetrievalGenerator(bank, kinds=SERVICE_KINDS, match_base_model=True)
        locks = {"cvae": threading.Lock(), "retrieve": threading.Lock()}
        got = trust("cvae", request, [scored], bank=bank, models=models, generators={"retrieve": retrieve},
                    locks=locks, inputs=INPUTS, checkpoint=ckpt)
        peer = retrieve.generate(request)[0]
    probe = Probe.from_loaded(models.get(DEFAULT_BASE_MODEL))
    ours, theirs = (probe.stats([a], INPUTS, 2)["preds"] for a in (scored, peer))
    disagreement = float(np.mean([a != b for a, b in zip(ours, theirs)]))
    assert abs((1 - disagreement) - float((1 - d).mean())) > 0.1  # the model's prior alone could not pass
    assert got["calibrated"] and got["expected"] == pytest.approx(1 - disagreement, abs=0.03), (got, disagreement)


def test_a_locked_generator_generates_holding_its_methods_lock():
    lock = threading.Lock()

    class Probing:  # records whether the lock was held while it ran
        def generate(self, request):
            return [lock.locked()]

    assert LockedGenerator(Probing(), lock).generate(None) == [True] and not lock.locked()
