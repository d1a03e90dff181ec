"""Building suite tasks into a real bank (resumable, CLI) and the evaluation harness on that bank."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from loragen.api.cli import main
from loragen.bank.evaluate import evaluate
from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.retrieval import RetrievalGenerator
from loragen.bank.store import Bank
from loragen.bank.train import TrainConfig, build_bank, imported_oracles, trained_oracles
from tests.unit.bank.suite.conftest import one_thread

FAST = TrainConfig(steps=3, min_steps=3, num_checkpoints=1)


def _small(task):
    # Fewer examples keep the 12-task build inside the test budget; the recipe and storage are the real ones.
    return replace(task, data_ref={**task.data_ref, "n_train": 32, "n_val": 8, "n_test": 16})


@pytest.fixture(scope="session")
def subset(suite):
    train = [t for t in suite if t.split == "train"]
    held = [t for t in suite if t.split == "heldout"]
    return [_small(t) for t in train[:4] + train[-5:] + held[:3]]  # both orders of lang/en-vs-de included


@pytest.fixture(scope="session")
def built_bank(subset, classifier, tmp_path_factory):
    """A 12-task bank built with the real recipe (3 steps): the suite's test-time subset build."""
    path = tmp_path_factory.mktemp("suite-bank") / "bank.duckdb"
    with one_thread(), Bank.open(path) as bank:
        first = build_bank(bank, subset[:8], trained_oracles(FAST), classifier, progress=False)
        again = build_bank(bank, subset, trained_oracles(FAST), classifier, progress=False)
        bank.reindex()
    return path, first, again


def test_twelve_task_build_stores_tasks_adapters_checkpoints_and_metrics(built_bank, subset):
    path, _, _ = built_bank
    with Bank.open(path) as bank:
        assert {t.name for t in bank.tasks()} == {t.name for t in subset}
        assert bank.get_task(subset[0].name) == subset[0]
        finals = bank.adapters(kind="final")
        assert len(finals) == 12 and len(bank.adapters(kind="checkpoint")) == 12
        m = finals[0].metrics
        assert {"test_accuracy", "base_accuracy", "seconds", "steps"} <= set(m) and m["seconds"] > 0


def test_build_is_resumable(built_bank):
    _, first, again = built_bank
    assert len(first.built) == 8 and not first.skipped
    assert again.skipped == first.built and len(again.built) == 4


def test_import_dir_reuses_peft_oracles(built_bank, subset, classifier, tmp_path):
    path, _, _ = built_bank
    task = subset[0]
    with Bank.open(path) as bank:
        final = bank.get(bank.adapters(task=task.name, kind="final")[0].id)
    root = tmp_path / "cache"
    from loragen.bank.lora.peft_format import save_peft

    save_peft(final, root / task.name.replace("/", "__") / "final")
    (root / "results.jsonl").write_text(json.dumps({"name": task.name, "metrics": {"test_accuracy": 0.5,
                                                                                   "base_accuracy": 0.25}}) + "\n")
    with Bank.open(tmp_path / "b.duckdb") as bank:
        summary = build_bank(bank, [task], imported_oracles(root, fallback=None), classifier, progress=False)
        rec = bank.adapters(task=task.name, kind="final")[0]
    assert summary.test_accuracy[task.name] == 0.5 and rec.metrics["base_accuracy"] == 0.25
    with Bank.open(tmp_path / "b.duckdb") as bank:
        stored = bank.get(rec.id)
    for m in final.modules:  # the imported adapter is stored unchanged (same ΔW)
        assert torch.allclose(stored.delta_weight(m), final.delta_weight(m), atol=1e-6)


def test_retrieval_excludes_the_task_itself_and_heldout_tasks(built_bank, subset):
    path, _, _ = built_bank
    with Bank.open(path) as bank:
        gen = RetrievalGenerator(bank)
        assert isinstance(gen, AdapterGenerator)
        task = subset[0]
        own = gen.generate(GenerationRequest(task.description))[0]
        assert own.metadata["task"] == task.name
        heldout = {t.name for t in subset if t.split == "heldout"}
        for t in subset:
            got = gen.generate(GenerationRequest(t.description, n_samples=3, exclude_tasks=frozenset({t.name})))
            assert len(got) == 3
            assert not {a.metadata["task"] for a in got} & (heldout | {t.name})


class _LookupGenerator:
    """Returns the bank adapter of the task whose description is the request's: must score like the oracle."""

    name = "lookup"

    def __init__(self, bank):
        self.bank = bank
        self.by_description = {t.description: t.name for t in bank.tasks()}
        self.requests = []

    def generate(self, request):
        self.requests.append(request)
        task = self.by_description.get(request.description)
        recs = self.bank.adapters(task=task, kind="final") if task else self.bank.adapters(kind="final")[:1]
        return [self.bank.get(recs[0].id)]


def test_harness_reports_every_split_and_method_with_normalised_gain(built_bank, classifier, tmp_path):
    path, _, _ = built_bank
    with Bank.open(path) as bank:
        lookup = _LookupGenerator(bank)
        report = evaluate(bank, {"lookup": lookup}, classifier=classifier, max_examples=8,
                          multitask_config=TrainConfig(steps=2, min_steps=2, num_checkpoints=0), progress=False,
                          conditions=("description", "labels", "examples"))
    assert list(report.summary) == ["in_bank", "heldout_task", "heldout_paraphrase"]
    assert report.config["tasks_per_split"] == {"in_bank": 9, "heldout_task": 3, "heldout_paraphrase": 9}
    for split in report.summary:
        assert set(report.summary[split]) == {"base", "oracle", "mean", "multitask", "retrieval", "lookup",
                                              "lookup+labels", "lookup+8examples", "lookup+random",
                                              "lookup+othertask", "retrieval+random", "retrieval+othertask"}
        assert report.summary[split]["base"]["normalised_gain"] == 0.0
        assert report.summary[split]["oracle"]["normalised_gain"] == 1.0
    assert report.summary["in_bank"]["lookup"]["accuracy"] == report.summary["in_bank"]["oracle"]["accuracy"]
    assert len(report.rows) == 12 * (9 + 3 + 9)
    # The random-description controls: a generator that reads its description loses when it gets a random string
    # or another task's description; the lookup generator finds no task for either.
    in_bank = report.summary["in_bank"]
    assert in_bank["lookup"]["aligned_minus_random"] > 0.2
    assert in_bank["lookup+othertask"]["accuracy"] < in_bank["lookup"]["accuracy"] - 0.2
    randoms = [r.description for r in lookup.requests if set(r.description) <= set("abcdefghijklmnopqrstuvwxyz ")]
    assert len(randoms) >= 9 + 3 + 9 and not set(randoms) & set(lookup.by_description)
    # each condition gets what it names: the wording alone, + label names, + 8 training examples of every label
    kinds = {(r.labels is not None, r.examples is not None) for r in lookup.requests}
    assert kinds == {(False, False), (True, False), (False, True)}
    with_examples = [r for r in lookup.requests if r.examples]
    assert all(len(r.examples) == 8 and {y for _, y in r.examples} == {0, 1} for r in with_examples)
    assert "retrieval" in report.table()
    saved = json.loads(report.save_json(tmp_path / "eval.json").read_text())
    assert saved["summary"]["heldout_task"]["oracle"]["accuracy"] > 0
    assert report.plot(tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bank_build_then_eval(built_bank, tmp_path, capsys):
    bank_path = tmp_path / "cli.duckdb"
    args = ["bank", "build", "--bank", str(bank_path), "--name", "lang/en-vs-de", "--steps", "2", "--no-progress"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["built"] == 1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1
    assert main(["bank", "build", "--bank", str(bank_path), "--name", "no/such-task"]) == 1
    path, _, _ = built_bank
    out = tmp_path / "eval.json"
    assert main(["eval", "--bank", str(path), "--split", "heldout_task", "--baseline", "base", "--baseline", "oracle",
                 "--max-examples", "8", "--json", str(out), "--plot", str(tmp_path / "e.png"), "--no-progress"]) == 0
    assert "oracle" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["summary"]["heldout_task"]) == {"base", "oracle"}


def test_cli_eval_scores_a_trained_cvae_per_condition(built_bank, tmp_path, capsys):
    """`loragen train hypernet` on the built bank, then `loragen eval --method cvae=CKPT`: one row per condition;
    a checkpoint that is not there is one clear error line, not a traceback."""
    path, _, _ = built_bank
    ckpt = tmp_path / "cvae"
    assert main(["train", "hypernet", "--bank", str(path), "-o", str(ckpt), "--max-steps", "2", "--accelerator",
                 "cpu", "--devices", "1", "--no-progress-bar"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--bank", str(path), "--split", "heldout_task", "--baseline", "base", "--baseline", "oracle",
                 "--method", f"cvae={ckpt}", "--method", f"cvae@again={ckpt}", "--condition", "description",
                 "--condition", "examples", "--max-examples", "8", "--json", str(out), "--plot",
                 str(tmp_path / "e.png"), "--no-progress"]) == 0
    summary = json.loads(out.read_text())["summary"]["heldout_task"]
    rows = {"", "+8examples", "+random", "+othertask"}
    assert set(summary) == {"base", "oracle"} | {f"cvae{r}" for r in rows} | {f"cvae@again{r}" for r in rows}
    assert "aligned_minus_random" in summary["cvae"]
    # two labels on one checkpoint: side-by-side rows of the same generator score the same (fixed seeds)
    assert summary["cvae@again"]["accuracy"] == summary["cvae"]["accuracy"]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in summary.values())
    capsys.readouterr()
    assert main(["eval", "--bank", str(path), "--method", f"cvae={tmp_path / 'missing'}", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "--method cvae" in err and "loragen train hypernet" in err
    assert main(["eval", "--bank", str(path), "--method", f"cvae={ckpt}", "--method", f"cvae={ckpt}",
                 "--no-progress"]) == 1
    assert "given twice" in capsys.readouterr().err
