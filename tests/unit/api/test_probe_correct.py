"""`Probe.correct`, retrieval's judge and the trust score's `example_accuracy`: labels counted on an encoder, exact
match of the greedy completion on a causal LM, measured as `loragen trust fit` measures a generation adapter."""

from __future__ import annotations

import pytest

from loragen.api.probe import Probe, example_judge
from loragen.bank.train import CausalLM
from loragen.meta.trust import shrunk_accuracy
from tests._local_models import LLAMA_TARGETS, save_llama
from tests._models import random_adapter

PAIRS = (("abc", "cba"), ("hello", "olleh"), ("x1", "1x"), ("stop", "pots"))


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> CausalLM:
    return CausalLM(save_llama(tmp_path_factory.mktemp("llama") / "m"))


def test_causal_judge_counts_what_trust_fit_measures(lm):
    probe = Probe(causal=(lm.model, lm.tokenizer))
    for seed in range(3):
        adapter = random_adapter(lm.model, LLAMA_TARGETS, seed=seed, scale=1.0, base_model=lm.base_model_id)
        right = probe.correct(adapter, PAIRS, 2)
        assert isinstance(right, int) and 0 <= right <= len(PAIRS)
        assert right == round(lm.scores(list(PAIRS), adapter)["exact_match"] * len(PAIRS))
        judge = example_judge(causal=(lm.model, lm.tokenizer))
        assert judge(adapter, PAIRS, 2) == right


def test_examples_of_the_other_kind_cannot_be_judged(lm):
    adapter = random_adapter(lm.model, LLAMA_TARGETS, base_model=lm.base_model_id)
    assert Probe(causal=(lm.model, lm.tokenizer)).correct(adapter, (("abc", 0), ("def", 1)), 2) is None
    assert Probe(causal=(lm.model, lm.tokenizer)).correct(adapter, (), 2) is None


def test_exact_match_prior_is_halfway_from_zero():
    assert shrunk_accuracy(0, 0, 2, chance=0.0) == pytest.approx(0.5)
    assert shrunk_accuracy(8, 8, 2, chance=0.0) == pytest.approx((8 + 4 * 0.5) / 12)
    assert shrunk_accuracy(0, 0, 2) == pytest.approx(0.75)  # classification: halfway from 1/K
