"""`bench/trust_backfill.py` on the shipped CVAE: a case whose adapter reproduces its stored accuracy gets
`balance_own`, one whose stored accuracy does not reproduce keeps None; the trust file is rebuilt from the cases."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loragen.api.trust_fit import EvalCase, _measure, _request
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.paths import shipped_dir
from loragen.bank.tasks import get_provider
from loragen.hypernet.generate import CVAEGenerator
from loragen.meta.trust import TrustModel

ROOT = Path(__file__).resolve().parents[2]
TASKS = ("lang/ru-vs-fr", "lang/nl-vs-de", "entity/company-vs-person", "lang/es-vs-en")


def test_backfill_keeps_the_feature_only_where_the_accuracy_reproduces(tmp_path, monkeypatch):
    monkeypatch.delenv("LORAGEN_SHIPPED_DIR", raising=False)  # the package's own shipped CVAE (tests hide it)
    ckpt = tmp_path / "hypernet"
    shutil.copytree(shipped_dir("hypernet", DEFAULT_BASE_MODEL), ckpt)
    provider = get_provider("minilm-suite")
    clf = provider.classifier()
    tasks = {t.name: t for t in provider.tasks()}
    gen = CVAEGenerator.from_checkpoint(ckpt)
    cases = []
    for name in TASKS:
        task, data = tasks[name], provider.data(tasks[name])
        case = EvalCase("heldout_task", task, task.description, "description")
        point = gen.generate(_request(case, clf.base_model_id, 0, data))[0]
        measured = _measure(clf, task, data.test[:16], point)
        cases.append({"task": name, "split": case.split, "condition": "description", "description": case.description,
                      "measured": measured, "features": {"chance": 0.5, "bank_similarity": 0.5}})
    cases[1]["measured"] = 1.0 - cases[1]["measured"] / 2 + 1 / 64  # an accuracy this adapter does not reproduce
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"max_examples": 16, "target": "accuracy", "methods": {"cvae": {"cases": cases}}}))
    TrustModel.fit([c["features"] for c in cases], [c["measured"] for c in cases], list(TASKS),
                   meta={"method": "cvae"}).save(ckpt / "trust.json")

    out = tmp_path / "out.json"
    run = subprocess.run([sys.executable, "bench/trust_backfill.py", "--report", report, "--method", f"cvae={ckpt}",
                          "--out", out, "--write-trust-files", "--no-progress"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "cvae: 3/4 cases reproduced" in run.stdout, run.stdout
    filled = [c["features"]["balance_own"] for c in json.loads(out.read_text())["methods"]["cvae"]["cases"]]
    assert filled[1] is None and all(0.0 <= b <= 1.0 for i, b in enumerate(filled) if i != 1), filled
    model = TrustModel.load(ckpt / "trust.json")
    assert "balance_own" in model.features and model.meta == {"method": "cvae"}
    assert [model.row(i)["balance_own"] for i in range(4)] == pytest.approx(filled)
