"""`api.uncertainty.build_scorer` remembers its scorer (and so its probability cache) across requests."""

from __future__ import annotations

import os

from loragen.api.uncertainty import build_scorer
from loragen.meta.calibration import LogisticCalibrator
from tests.unit.meta._toy import ToyClassifier


def _calibrator(path, bias: float):
    return LogisticCalibrator(("max_prob",), [0.5], [0.1], [1.0], bias).save(path)


def test_the_same_classifier_bank_and_calibrator_get_the_same_scorer(tmp_path):
    clf, other = ToyClassifier(), ToyClassifier()
    first = build_scorer(clf, None)
    assert build_scorer(clf, None) is first
    assert first.cache_size > 0
    assert build_scorer(other, None) is not first and build_scorer(other, None).classifier is other
    path = _calibrator(tmp_path / "calibrator.json", 0.0)
    with_cal = build_scorer(clf, None, path)
    assert with_cal is not first and with_cal.calibrator.bias == 0.0
    assert build_scorer(clf, None, path) is with_cal


def test_a_rewritten_calibrator_file_is_read_again(tmp_path):
    clf = ToyClassifier()
    path = _calibrator(tmp_path / "calibrator.json", 0.0)
    before = build_scorer(clf, None, path)
    _calibrator(path, 2.5)
    os.utime(path, ns=(before_ns := path.stat().st_mtime_ns + 10**9, before_ns))
    after = build_scorer(clf, None, path)
    assert after is not before and after.calibrator.bias == 2.5


def test_scorers_of_one_classifier_and_the_trust_probe_share_forward_passes(tmp_path, monkeypatch):
    """A request's uncertainty score runs its adapter on the probe texts the trust score already ran it on."""
    import torch

    from loragen.api.probe import Probe
    from loragen.bank.train.classifier import PrototypeClassifier
    from tests._models import random_adapter

    clf = PrototypeClassifier()
    adapter = random_adapter(clf.model, ("query", "value"), r=2, seed=5, scale=0.2)
    texts = ["dzień dobry", "ahoj jak se máš", "good morning"]
    calls = []
    real = clf.logits_from_factors
    monkeypatch.setattr(clf, "logits_from_factors", lambda *a, **k: calls.append(1) or real(*a, **k))
    probe_stats = Probe(classifier=clf).stats([adapter], texts, 2)
    assert len(calls) == 1
    scorer = build_scorer(clf, None, _calibrator(tmp_path / "calibrator.json", 0.0))  # another scorer, same cache
    probs = scorer.class_probs([adapter], texts)
    assert len(calls) == 1 and probe_stats["preds"] == probs[0].argmax(-1).tolist()
    plain = torch.softmax(clf.logits(texts, adapter).float(), -1)  # the uncached forward of the same adapter
    torch.testing.assert_close(probs[0], plain, atol=1e-5, rtol=1e-4)
