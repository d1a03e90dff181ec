"""`balance_own`: how evenly an adapter spreads its labels over the user's inputs (0 when it gives all one label),
a trust feature only when the user's inputs are given."""

from __future__ import annotations

import math

import pytest
import torch

from loragen.api.probe import Probe, label_balance
from loragen.api.trust import features
from loragen.bank.generator import GenerationRequest


def test_label_balance_is_zero_for_one_label_and_one_for_an_even_spread():
    one_label = torch.tensor([[0.99, 0.01]] * 6)
    even = torch.tensor([[0.99, 0.01], [0.01, 0.99]] * 3)
    assert label_balance(one_label) == pytest.approx(0.0808, abs=1e-3)  # entropy of (0.99, 0.01) over log 2
    assert label_balance(even) == pytest.approx(1.0)
    three = torch.eye(3).repeat(2, 1)  # 3 labels, each given twice
    assert label_balance(three) == pytest.approx(1.0) and label_balance(torch.eye(3)[[0, 0, 1]]) < 1


def test_features_carry_balance_on_the_users_inputs_only():
    from loragen.bank.train.classifier import PrototypeClassifier
    from tests._models import random_adapter

    clf = PrototypeClassifier()
    adapter = random_adapter(clf.model, ("query", "value"), r=2, seed=5, scale=0.2)
    request = GenerationRequest("label 0 if Polish, 1 if Czech", labels=("Polish", "Czech"))
    probe = Probe(classifier=clf)
    inputs = ["dzień dobry", "ahoj jak se máš", "dobranoc", "děkuji"]
    row = features(request, [adapter], probe=probe, inputs=inputs)
    probs = torch.softmax(clf.logits(inputs, adapter, 2).double(), -1)
    mean = probs.mean(0)
    assert row["balance_own"] == pytest.approx(float(-(mean * mean.log()).sum() / math.log(2)), abs=1e-4)
    assert "balance_own" not in features(request, [adapter], probe=probe)
