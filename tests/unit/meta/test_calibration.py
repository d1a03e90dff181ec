from __future__ import annotations

import numpy as np
import pytest

from loragen.bank.evaluate.calibration import auroc, expected_calibration_error
from loragen.meta.calibration import LogisticCalibrator, reliability_diagram


def test_ece_on_a_hand_made_example():
    # bin [0.9, 1.0]: conf 0.95, 0.95, 1.0 -> mean 0.9667, acc 2/3 ; bin [0.6, 0.7): conf 0.6, 0.6 -> acc 1/2
    conf = [0.95, 0.95, 1.0, 0.6, 0.6]
    correct = [1, 1, 0, 1, 0]
    expected = 3 / 5 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3) + 2 / 5 * abs(0.5 - 0.6)
    assert expected_calibration_error(conf, correct) == pytest.approx(expected)
    assert expected == pytest.approx(0.22)


def test_ece_is_zero_when_perfectly_calibrated_and_rejects_bad_input():
    assert expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.5], [1])


def test_auroc_hand_made_and_ties():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [1, 1])


def test_logistic_calibrator_fits_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    p = 1 / (1 + np.exp(-(2 * x[:, 0])))
    y = rng.random(400) < p
    cal = LogisticCalibrator.fit(x, y, ("a", "b"), monotone=("b",))
    assert cal.weight[0] > 1.0 and cal.weight[1] >= 0.0
    out = cal(x)
    assert out.min() >= 0 and out.max() <= 1
    assert expected_calibration_error(out, y) < 0.08
    again = LogisticCalibrator.load(cal.save(tmp_path / "cal.json"))
    np.testing.assert_allclose(again(x), out)
    png = reliability_diagram({"logistic": (out, y)}, tmp_path / "rel.png")
    assert png.stat().st_size > 1000
