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
