"""Issue 16: `loragen eval --trust` reports the stored trust models on the evaluation's cases (a tiny BERT bank of
stored tasks, a 4-step CVAE, `loragen trust fit` on heldout_task): predicted vs measured per case, cases of the
calibration tasks predicted with their task left out, a diagram next to the eval chart, and a method without a
trust file said to be "not calibrated" without failing the evaluation."""

from __future__ import annotations

import json
import shutil

import pytest

from loragen.meta.trust import TrustModel
from tests.e2e.test_trust import PAIRS, _bank, _cli
from tests.unit.bank._custom import tiny_bert_dir

pytestmark = pytest.mark.slow
HELDOUT = {f"me/{a}-vs-{b}" for a, b in PAIRS[5:]}  # the bank's held-out tasks: the trust fit's calibration tasks


def test_eval_trust_scores_stored_trust_files_on_the_eval_cases(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    bank = _bank(tmp_path / "bank.duckdb", tiny_bert_dir(tmp_path / "bert"))
    cvae, bare = tmp_path / "cvae", tmp_path / "bare"
    _cli(capsys, "train", "hypernet", "--bank", bank, "-o", cvae, "--max-steps", "4", "--accelerator", "cpu",
         "--devices", "1", "--no-progress-bar")
    shutil.copytree(cvae, bare)  # the same generator, with no trust file
    _cli(capsys, "trust", "fit", "--bank", bank, "--method", f"cvae={cvae}", "--method", "retrieve", "--split",
         "heldout_task", "--condition", "description", "--json", tmp_path / "fit.json", "--plot",
         tmp_path / "fit.png", "--no-progress")
    assert (cvae / "trust.json").is_file() and not (bare / "trust.json").exists()

    report, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    out = _cli(capsys, "eval", "--bank", bank, "--method", f"cvae={cvae}", "--method", f"cvae@bare={bare}",
               "--baseline", "retrieval", "--split", "in_bank", "--split", "heldout_task", "--condition", "description",
               "--control", "none", "--max-examples", "8", "--trust", "--json", report, "--plot", plot,
               "--no-progress")
    data = json.loads(report.read_text())
    trust = data["trust"]
    assert trust["target"] == "accuracy" and trust["splits"] == ["heldout_task", "in_bank"], out
    assert trust["n_cases"] == len(PAIRS)  # one wording per task, one condition
    assert list(trust["methods"]) == ["cvae", "cvae@bare", "retrieval"]

    bare_entry = trust["methods"]["cvae@bare"]
    assert bare_entry["calibrated"] is False and "metrics" not in bare_entry
    assert bare_entry["trust_file"] == str(bare / "trust.json")
    assert bare_entry["reason"].startswith("not calibrated") and "loragen trust fit" in bare_entry["reason"]
    assert "not calibrated" in out and "cvae@bare" in out

    for row, trust_file in (("cvae", cvae / "trust.json"), ("retrieval", f"{bank}.trust-retrieve.json")):
        entry = trust["methods"][row]
        assert entry["calibrated"] and entry["trust_file"] == str(trust_file)
        cases = entry["cases"]
        assert entry["metrics"]["n"] == len(cases) == trust["n_cases"]
        for key in ("mean_abs_error", "spearman", "auroc_below_0.7", "chance_level", "chance_above_0.8",
                    "interval_coverage"):
            assert key in entry["metrics"]
        assert set(entry["by_condition"]) == {"description"} and set(entry["by_split"]) == {"heldout_task", "in_bank"}
        assert all(0 <= c["low"] <= c["predicted"] <= c["high"] <= 1 and 0 <= c["measured"] <= 1 for c in cases)
        assert {c["task"] for c in cases if c["in_calibration"]} == HELDOUT
        assert all(c["in_calibration"] == (c["split"] == "heldout_task") for c in cases)
        assert (entry["n_in_calibration"], entry["n_unseen"]) == (len(HELDOUT), len(PAIRS) - len(HELDOUT))
        # honest: a calibration task's case is predicted by the stored model refitted without that task
        model = TrustModel.load(trust_file)
        for c in cases:
            honest = model.without_tasks({c["task"]}) if c["in_calibration"] else model
            assert c["predicted"] == pytest.approx(honest.predict(c["features"]).expected)
        # a held-out task's measured accuracy is the evaluation's own (same adapter, same test examples); an in-bank
        # task is asked as `trust fit` and users ask it (its own bank adapter may be retrieved), eval hides it
        per_task = {r["task"]: r["accuracy"] for r in data["per_task"] if r["method"] == row}
        assert all(c["measured"] == pytest.approx(per_task[c["task"]]) for c in cases if c["split"] == "heldout_task")
    assert (tmp_path / "eval_trust.png").stat().st_size > 1000 and trust["plot"] == str(tmp_path / "eval_trust.png")
    assert "MAE" in out and "eval_trust.png" in out

    # what `generate` with only the defaults would print: the features without the bank or inputs (the built-in
    # suite as neighbours), the same adapters and measured accuracies; retrieval needs a bank and is not scored
    from loragen.api.generators import build_methods
    from loragen.api.trust_check import check_trust
    from loragen.api.trust_fit import bank_scorer, eval_cases
    from loragen.bank.store import Bank

    with Bank.open(bank) as opened:
        cases = eval_cases(opened, ["heldout_task"], ["description"])
        finals = {r.task: r.id for r in opened.adapters(kind="final")}
        scorer, classifier = bank_scorer(opened, "classification", finals, cases[0].task)
        generators, checkpoints = build_methods([f"cvae={cvae}", "retrieve"], opened, classifier)
        bank_path = check_trust(opened, generators, checkpoints, cases, scorer, progress=False)
        defaults = check_trust(opened, generators, checkpoints, cases, scorer, progress=False, defaults=True)
    assert defaults["defaults"] and defaults["methods"]["retrieve"]["metrics"] is None
    plain, default = bank_path["methods"]["cvae"]["cases"], defaults["methods"]["cvae"]["cases"]
    assert [c["measured"] for c in default] == [c["measured"] for c in plain] and len(default) == len(HELDOUT)
    for c in default:
        f = c["features"]
        assert all(f.get(k) is None for k in ("weight_similarity", "entropy_own", "disagreement"))
        assert f["bank_similarity"] is not None and f["entropy_probe"] is not None  # from the suite's tasks
    assert all(c["features"]["weight_similarity"] is not None and c["features"]["entropy_own"] is not None
               for c in plain)
