"""`Scorer`'s cache of class probabilities (and tokenised inputs): a hit is exactly the uncached result."""

from __future__ import annotations

import pytest
import torch

from loragen.meta.score import Scorer
from tests._models import random_adapter
from tests.unit.meta._toy import ToyClassifier

TEXTS = ["dzień dobry, jak się masz", "dobrý den, jak se máte", "hello there, how are you"]


class CountingToy(ToyClassifier):
    """The toy classifier, counting its forward passes (the cache must save them, not just return equal values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forwards = 0

    def logits_from_factors(self, texts, factors, scaling, num_labels=2):
        self.forwards += 1
        return super().logits_from_factors(texts, factors, scaling, num_labels)


def _adapters(model, n: int) -> list:
    return [random_adapter(model, ("query", "value"), r=2, seed=s, scale=0.5) for s in range(n)]


def test_a_cache_hit_equals_the_uncached_probabilities_and_skips_the_forward():
    clf = CountingToy()
    adapters = _adapters(clf.model, 2)
    plain = Scorer(clf).class_probs(adapters, TEXTS)
    cached = Scorer(clf, cache_size=4)
    first = cached.class_probs(adapters, TEXTS)
    before = clf.forwards
    again = cached.class_probs(adapters, TEXTS)
    assert clf.forwards == before  # both served from the cache
    assert torch.equal(first, plain) and torch.equal(again, plain)
    assert cached.score("x", adapters, TEXTS).to_dict() == Scorer(clf).score("x", adapters, TEXTS).to_dict()


def test_the_cache_key_is_the_adapter_the_inputs_and_the_labels():
    clf = CountingToy()
    a, b = _adapters(clf.model, 2)
    fewer = Scorer(clf).class_probs([a], TEXTS[:2])
    scorer = Scorer(clf, cache_size=8)
    scorer.class_probs([a], TEXTS)
    n = clf.forwards
    assert not torch.equal(scorer.class_probs([b], TEXTS), scorer.class_probs([a], TEXTS))
    assert torch.equal(scorer.class_probs([a], TEXTS[:2]), fewer)
    assert scorer.class_probs([a], TEXTS, num_labels=2).shape == (1, 3, 2)
    assert clf.forwards == n + 2  # b, and a on other inputs; a on TEXTS again was a hit


def test_the_cache_drops_the_least_recently_used_and_can_be_off():
    clf = CountingToy()
    a, b, c = _adapters(clf.model, 3)
    scorer = Scorer(clf, cache_size=2)
    for adapter in (a, b, a, c):  # a was used after b: b is dropped
        scorer.class_probs([adapter], TEXTS)
    n = clf.forwards
    scorer.class_probs([a], TEXTS)
    assert clf.forwards == n
    scorer.class_probs([b], TEXTS)
    assert clf.forwards == n + 1
    off = Scorer(clf)
    off.class_probs([a], TEXTS)
    off.class_probs([a], TEXTS)
    assert clf.forwards == n + 3
    with pytest.raises(ValueError, match="cache_size"):
        Scorer(clf, cache_size=-1)


def test_tokenised_inputs_of_the_prototype_classifier_give_the_same_probabilities():
    from loragen.bank.train.classifier import PrototypeClassifier

    clf = PrototypeClassifier()
    adapter = random_adapter(clf.model, ("query", "value"), r=2, seed=3, scale=0.2)
    plain = Scorer(clf).class_probs([adapter], TEXTS)
    cached = Scorer(clf, cache_size=4)
    assert torch.equal(cached.class_probs([adapter], TEXTS), plain)
    cached.cache.clear("probs")  # the tokenised batch is still remembered: the forward on it gives the same numbers
    assert torch.equal(cached.class_probs([adapter], TEXTS), plain)
