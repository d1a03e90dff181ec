"""`api.trust_refit`: stale metrics of a trust file are recomputed (or only reported with write=False), a fit
report's methods are re-scored, and anything else is refused with what to pass instead."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loragen.api.trust_refit import refit
from loragen.bank.errors import CheckpointError
from loragen.meta.trust import TrustModel


def _model(n_tasks: int = 8) -> TrustModel:
    rng = np.random.default_rng(0)
    rows = [{"similarity": float(s), "chance": 0.5} for s in rng.uniform(0, 1, 2 * n_tasks)]
    acc = [0.5 + 0.45 * r["similarity"] for r in rows]
    return TrustModel.fit(rows, acc, [f"t{i // 2}" for i in range(2 * n_tasks)],
                          meta={"method": "cvae", "cross_validated": {"mean_abs_error": 9.0}})


def test_trust_file_metrics_are_recomputed_only_when_writing(tmp_path):
    path = _model().save(tmp_path / "trust.json")
    before = path.read_text()
    report = refit([path], write=False, json_path=tmp_path / "r.json")
    assert path.read_text() == before  # --no-write
    entry = report["entries"][0]
    assert entry["method"] == "cvae" and entry["before"] == {"mean_abs_error": 9.0}
    assert entry["metrics"]["mean_abs_error"] < 0.05 and entry["metrics"]["n"] == 16
    refit([path])
    assert json.loads(path.read_text())["meta"]["cross_validated"] == entry["metrics"]
    assert TrustModel.load(path).rows.shape == (16, 2)  # the cases stay


def test_a_fit_report_is_rescored_per_method(tmp_path):
    model = _model()
    cases = [{"task": g, "measured": float(y), "features": model.row(i), "condition": ("description", "examples")[i % 2]}
             for i, (g, y) in enumerate(zip(model.groups, model.targets))]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"target": "accuracy", "methods": {"cvae": {"metrics": None, "cases": cases}}}))
    entry = refit([path])["entries"][0]
    assert entry["before"] is None and len(entry["cases"]) == 16
    assert all(c["low"] <= c["predicted"] <= c["high"] for c in entry["cases"])
    assert {k: v["n"] for k, v in entry["by_condition"].items()} == {"description": 8, "examples": 8}
    path.write_text(json.dumps({"methods": {"cvae": {"metrics": {}}}}))
    with pytest.raises(CheckpointError, match="holds no cases"):
        refit([path])


@pytest.mark.parametrize("text", ["not json", '{"kind": "other"}', '{"kind": "loragen-trust", "rows": 1}'])
def test_anything_else_is_refused_with_what_to_pass(tmp_path, text):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(CheckpointError, match="trust"):
        refit([path])


def test_without_scores_a_what_if_and_writes_nothing(tmp_path):
    path = _model().save(tmp_path / "trust.json")
    before = path.read_text()
    entry = refit([path], without=["similarity"])["entries"][0]
    assert path.read_text() == before  # a what-if never rewrites the file
    assert entry["metrics"]["mean_abs_error"] > 0.05  # the signal is gone: the prior alone
    with pytest.raises(CheckpointError, match="--manifest"):
        refit([path], without=["similarity"], manifest=tmp_path / "manifest.json")


def test_nothing_is_written_unless_every_input_reads(tmp_path):
    path = _model().save(tmp_path / "trust.json")
    before = path.read_text()
    (tmp_path / "bad.json").write_text('{"kind": "other"}')
    with pytest.raises(CheckpointError, match="neither a trust file"):
        refit([path, tmp_path / "bad.json"])
    with pytest.raises(CheckpointError, match="manifest.json of a release"):
        refit([path], manifest=tmp_path / "missing.json")
    assert path.read_text() == before
