"""`api.trust_check`: a case of one of the trust model's calibration tasks is predicted by the model refitted
without that task's rows (never in-sample); any other case by the stored model itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from loragen.api.trust_check import diagram_path, honest_estimates, trust_method
from loragen.meta.trust import TrustModel


def _model() -> TrustModel:
    """Five tasks where accuracy rises with `similarity`; task t0 sits far above that line (an outlier)."""
    rows, measured, groups = [], [], []
    for t in range(5):
        for s in (0.2, 0.5, 0.8):
            rows.append({"similarity": s})
            measured.append(0.95 if t == 0 else 0.3 + 0.5 * s)
            groups.append(f"t{t}")
    return TrustModel.fit(rows, measured, groups)


def test_calibration_tasks_are_predicted_with_their_own_rows_left_out():
    model = _model()
    row = {"similarity": 0.2}
    records = [{"task": "t0", "features": row, "measured": 0.95}, {"task": "unseen", "features": row, "measured": 0.4}]
    inside, outside = honest_estimates(model, records)

    keep = [i for i, g in enumerate(model.groups) if g != "t0"]
    refit = TrustModel.fit([model.row(i) for i in keep], model.targets[keep], [model.groups[i] for i in keep])
    expected = refit.predict(row)
    assert inside["in_calibration"] and not outside["in_calibration"]
    assert (inside["predicted"], inside["low"], inside["high"]) == (expected.expected, expected.low, expected.high)
    in_sample = model.predict(row).expected
    assert inside["predicted"] < in_sample - 0.05  # the outlier task no longer pulls its own prediction up
    assert outside["predicted"] == in_sample  # a task the calibrator never saw: the stored model as it is
    assert inside["measured"] == 0.95 and inside["used"] == ["similarity"]


def test_a_model_holding_only_the_case_s_task_is_an_error_not_an_in_sample_guess():
    model = _model()
    only_t0 = TrustModel(model.features, model.rows[:3], model.targets[:3], model.groups[:3])
    with pytest.raises(ValueError, match="no calibration row outside tasks"):
        honest_estimates(only_t0, [{"task": "t0", "features": {"similarity": 0.5}, "measured": 0.9}])


def test_rows_name_their_trust_file_and_diagram():
    assert [trust_method(r) for r in ("cvae", "abmll@seed1", "retrieval")] == ["cvae", "abmll", "retrieve"]
    assert diagram_path(Path("bench/results/eval.png")) == Path("bench/results/eval_trust.png")
