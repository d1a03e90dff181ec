"""The trust model: a known target is recovered, bimodal outcomes get their mean and a covering interval, missing
features are handled, JSON round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loragen.meta.trust import TrustModel, shrunk_accuracy
from loragen.meta.trust_report import spearman, trust_diagram, trust_metrics


def _synthetic(n_tasks: int = 40, per_task: int = 3, seed: int = 0):
    """accuracy = 0.5 + 0.45·similarity + small noise; `noise_feature` is unrelated."""
    rng = np.random.default_rng(seed)
    rows, acc, groups = [], [], []
    for t in range(n_tasks):
        for _ in range(per_task):
            s = rng.uniform(0.0, 1.0)
            rows.append({"similarity": s, "noise_feature": rng.normal()})
            acc.append(float(np.clip(0.5 + 0.45 * s + rng.normal(0, 0.01), 0, 1)))
            groups.append(f"task{t}")
    return rows, acc, groups


def test_recovers_a_function_of_a_feature():
    rows, acc, groups = _synthetic()
    model = TrustModel.fit(rows, acc, groups)
    errors = [abs(model.predict({"similarity": s}).expected - (0.5 + 0.45 * s)) for s in (0.1, 0.5, 0.9)]
    assert max(errors) < 0.03, errors
    cv = model.cross_validated()
    metrics = trust_metrics([e.expected for e in cv], acc, [0.5] * len(acc), [e.low for e in cv], [e.high for e in cv])
    assert metrics["mean_abs_error"] < 0.03 and metrics["spearman"] > 0.95, metrics
    assert metrics["interval_coverage"] >= 0.7, metrics
    assert all(e.low <= e.expected <= e.high for e in cv)


def test_bimodal_outcomes_get_their_mean_and_an_interval_that_covers_them():
    """Adapters either work (accuracy 1.0) or sit at chance (0.5), and the signal cannot tell which: the expected
    accuracy is the mean (0.75), not the sigmoid of the mean logit (0.87), and the interval reaches both outcomes."""
    rng = np.random.default_rng(0)
    rows = [{"similarity": float(rng.normal())} for _ in range(60)]
    acc = [1.0 if i % 2 else 0.5 for i in range(60)]
    model = TrustModel.fit(rows, acc, [f"task{i // 2}" for i in range(60)])
    est = model.predict({"similarity": 0.0})
    assert est.expected == pytest.approx(0.75, abs=0.05) and est.low <= 0.5 and est.high == 1.0, est
    cv = model.cross_validated()
    coverage = np.mean([e.low <= a <= e.high for e, a in zip(cv, acc)])
    assert coverage >= 0.8, coverage  # nominal 0.8; a measured 1.0 is inside [low, 1.0]


def test_missing_feature_uses_the_model_of_the_features_present():
    rows, acc, groups = _synthetic()
    for r in rows[::2]:
        r["similarity"] = None  # half the cases lack it
    model = TrustModel.fit(rows, acc, groups)
    with_it = model.predict({"similarity": 1.2, "noise_feature": 0.0})
    without = model.predict({"noise_feature": 0.0})
    assert with_it.features == ("noise_feature", "similarity") and without.features == ("noise_feature",)
    assert with_it.expected > 0.95 and with_it.high - with_it.low < without.high - without.low
    assert model.predict({"similarity": float("nan")}).features == ()  # NaN counts as missing: the prior alone


def test_a_feature_too_few_tasks_have_is_dropped_not_guessed():
    rows, acc, groups = _synthetic(n_tasks=10)
    for r in rows[3:]:
        r["noise_feature"] = None
    est = TrustModel.fit(rows, acc, groups).predict({"similarity": 0.5, "noise_feature": 1.0})
    assert est.dropped == ("noise_feature",) and est.features == ("similarity",)


def test_json_round_trip_with_fp16_reference_embeddings(tmp_path):
    rows, acc, groups = _synthetic(n_tasks=8)
    ref = np.eye(4, dtype=np.float32)[:3]
    model = TrustModel.fit(rows, acc, groups, meta={"method": "cvae"}, reference_embeddings=ref)
    path = model.save(tmp_path / "trust.json")
    assert json.loads(path.read_text())["kind"] == "loragen-trust"
    back = TrustModel.load(path)
    assert back.meta == {"method": "cvae"} and back.reference_embeddings.dtype == np.float16
    assert back.reference_similarity(np.array([0, 1, 0, 0.0])) == pytest.approx(1.0)
    assert back.reference_similarity(np.array([0, 0, 0, 1.0])) == pytest.approx(0.0)
    row = {"similarity": 0.4, "noise_feature": -0.3}
    assert back.predict(row) == model.predict(row)


def test_bad_inputs_say_what_is_wrong(tmp_path):
    rows, acc, groups = _synthetic(n_tasks=8)
    with pytest.raises(ValueError, match="at least 4 tasks"):
        TrustModel.fit(rows[:6], acc[:6], groups[:6])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        TrustModel.fit(rows, [2.0] * len(rows), groups)
    (tmp_path / "x.json").write_text('{"kind": "logistic"}')
    with pytest.raises(ValueError, match="loragen trust fit"):
        TrustModel.load(tmp_path / "x.json")


def test_metrics_count_chance_level_violations_and_flag_auroc(tmp_path):
    m = trust_metrics([0.9, 0.85, 0.55, 0.95], [0.5, 0.9, 0.52, 0.97], [0.5] * 4)
    assert m["chance_level"] == 2 and m["chance_above_0.8"] == 1
    assert m["auroc_below_0.7"] == pytest.approx(0.75)  # 3 of 4 (low, high) pairs ranked right
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and spearman([1, 1], [1, 2]) is None
    assert shrunk_accuracy(8, 8, 2) == pytest.approx((8 + 4 * 0.75) / 12)
    assert trust_diagram({"cvae": ([0.5, 0.9], [0.6, 0.8])}, tmp_path / "d.png").stat().st_size > 1000
