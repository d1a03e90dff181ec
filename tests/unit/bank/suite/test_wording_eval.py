"""The heldout_wording evaluation split: its tasks and wordings, the harness on a tiny real bank, `loragen eval`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from loragen.api.cli import main
from loragen.bank.evaluate import ALL_SPLITS, EVAL_SPLITS, eval_descriptions, evaluate, split_tasks
from loragen.bank.records import TaskRecord
from loragen.bank.store import Bank
from loragen.bank.suite.wordings import wording_descriptions
from loragen.bank.train import TrainConfig, build_bank, trained_oracles
from tests.unit.bank.suite.conftest import one_thread

FAST = TrainConfig(steps=3, min_steps=3, num_checkpoints=1)


@pytest.fixture(scope="module")
def tiny(suite):
    """Both orders of an in-bank language pair, an in-bank entity task and a held-out language task."""
    pair = next(t for t in suite if t.split == "train" and t.name.startswith("lang/"))
    names = {pair.name, "lang/" + "-vs-".join(pair.name[5:].split("-vs-")[::-1]),
             next(t.name for t in suite if t.split == "train" and t.family == "entity"),
             next(t.name for t in suite if t.split == "heldout" and t.family == "lang")}
    chosen = [replace(t, data_ref={**t.data_ref, "n_train": 32, "n_val": 8, "n_test": 16})
              for t in suite if t.name in names]
    assert len(chosen) == 4
    return chosen


@pytest.fixture(scope="module")
def tiny_bank(tiny, classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("wording-bank") / "bank.duckdb"
    with one_thread(), Bank.open(path) as bank:
        build_bank(bank, tiny, trained_oracles(FAST), classifier, progress=False)
        bank.reindex()
    return path


class _WordingLookup:
    """Returns the bank adapter of the task the request's wording belongs to: must score like the oracle."""

    def __init__(self, bank):
        self.bank = bank
        self.owner = {w: t.name for t in bank.tasks() for w in wording_descriptions(t)}
        self.requests = []

    def generate(self, request):
        self.requests.append(request.description)
        task = self.owner.get(request.description)
        recs = self.bank.adapters(task=task, kind="final") if task else self.bank.adapters(kind="final")[:1]
        return [self.bank.get(recs[0].id)]


def test_split_covers_every_suite_task_with_its_wordings_and_no_other_task(tiny):
    assert "heldout_wording" in ALL_SPLITS and "heldout_wording" not in EVAL_SPLITS
    custom = TaskRecord("mine/spam", "Label 0 for ham, 1 for spam.", ("ham", "spam"),
                        data_ref={"provider": "bank"})
    assert split_tasks([*tiny, custom], "heldout_wording") == tiny  # in-bank and held-out tasks alike
    for task in tiny:
        asked = eval_descriptions(task, "heldout_wording")
        assert asked == wording_descriptions(task) and len(asked) == 3
        assert not {task.description, *task.paraphrases, *task.heldout_paraphrases} & set(asked)
    with pytest.raises(ValueError, match="no hand-written wordings"):
        eval_descriptions(custom, "heldout_wording")


def test_harness_reports_heldout_wording_next_to_the_template_splits(tiny_bank, tiny, classifier, tmp_path):
    with Bank.open(tiny_bank) as bank:
        lookup = _WordingLookup(bank)
        report = evaluate(bank, {"lookup": lookup}, ALL_SPLITS, baselines=("base", "oracle", "retrieval"),
                          classifier=classifier, max_examples=8, progress=False, conditions=("description",),
                          controls=("random",))
    assert list(report.summary) == list(ALL_SPLITS)
    assert report.config["tasks_per_split"] == {"in_bank": 3, "heldout_task": 1, "heldout_paraphrase": 3,
                                                "heldout_wording": 4}
    wording = report.summary["heldout_wording"]
    assert set(wording) == {"base", "oracle", "retrieval", "lookup", "retrieval+random", "lookup+random"}
    # the split scores each task on its own test data with each of its wordings: the wording lookup is the oracle
    assert wording["lookup"]["accuracy"] == wording["oracle"]["accuracy"]
    assert wording["oracle"]["wording_minus_template"] == 0.0 and wording["oracle"]["n_paired"] == 4
    assert wording["lookup"]["n_paired"] == 4 and "wording_minus_template" in wording["retrieval"]
    asked = [d for d in lookup.requests if d in lookup.owner]
    assert sorted(asked) == sorted(w for t in tiny for w in wording_descriptions(t))
    rows = [r for r in report.rows if r["split"] == "heldout_wording"]
    assert len(rows) == 4 * 6 and {r["task_split"] for r in rows} == {"train", "heldout"}
    table = report.table()
    assert "heldout_wording acc" in table and "heldout_wording=4" in table and "retrieval" in table
    saved = json.loads(report.save_json(tmp_path / "eval.json").read_text())
    assert saved["summary"]["heldout_wording"]["retrieval"]["n_tasks"] == 4


def test_cli_eval_split_heldout_wording(tiny_bank, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--bank", str(tiny_bank), "--split", "heldout_wording", "--baseline", "base",
                 "--baseline", "oracle", "--baseline", "retrieval", "--control", "none", "--max-examples", "8",
                 "--json", str(out), "--plot", str(tmp_path / "e.png"), "--no-progress"]) == 0
    assert "heldout_wording" in capsys.readouterr().out
    summary = json.loads(out.read_text())["summary"]
    assert list(summary) == ["heldout_wording"] and set(summary["heldout_wording"]) == {"base", "oracle",
                                                                                         "retrieval"}
    assert main(["eval", "--bank", str(tiny_bank), "--split", "all", "--text-style", "sentences", "--baseline",
                 "oracle", "--control", "none", "--max-examples", "4", "--json", str(out), "--plot",
                 str(tmp_path / "e.png"), "--no-progress"]) == 0
    saved = json.loads(out.read_text())
    assert list(saved["summary"]) == list(ALL_SPLITS) and saved["config"]["text_style"] == "sentences"
    assert saved["config"]["tasks_per_split"]["heldout_wording"] == 3  # the language tasks only


def test_sentence_test_texts_for_language_tasks_only(suite):
    from loragen.bank.errors import TaskDataError
    from loragen.bank.suite import task_data
    from loragen.bank.suite.data import source
    from loragen.bank.suite.provider import MiniLMSuite

    lang = next(t for t in suite if t.family == "lang" and len(t.labels) == 3)
    words = task_data(lang, n_train=16, n_val=8, n_test=30)
    sentences = task_data(lang, n_train=16, n_val=8, n_test=30, text_style="sentences")
    assert sentences == task_data(lang, n_train=16, n_val=8, n_test=30, text_style="sentences")
    assert task_data(lang, n_train=16, n_val=8, n_test=30, text_style="words") == words  # training texts unchanged
    assert (sentences.train, sentences.val) == (words.train, words.val)
    assert sorted(y for _, y in sentences.test) == sorted(y for _, y in words.test)
    pools = [set(source(k).items) for k in lang.data_ref["sources"]]
    for text, label in sentences.test:
        assert text[0].isupper() and text[-1] in ".?" and text not in {t for t, _ in words.test}
        tokens = [w.strip(",.?") for w in text.split()]
        assert all(w in pools[label] or w[:1].lower() + w[1:] in pools[label] for w in tokens), text
    entity = next(t for t in suite if t.family == "entity")
    assert MiniLMSuite().text_styles(entity) == ("words",) and "sentences" in MiniLMSuite().text_styles(lang)
    with pytest.raises(TaskDataError, match="no 'sentences' test texts"):
        task_data(entity, text_style="sentences")


def test_harness_scores_language_tasks_on_sentences(tiny_bank, tiny, classifier):
    with Bank.open(tiny_bank) as bank:
        report = evaluate(bank, None, ("in_bank", "heldout_task", "heldout_wording"), baselines=("base", "oracle"),
                          classifier=classifier, max_examples=8, progress=False, controls=(),
                          text_style="sentences")
    assert report.config["text_style"] == "sentences"
    assert report.config["tasks_per_split"] == {"in_bank": 2, "heldout_task": 1, "heldout_wording": 3}
    assert {r["task"] for r in report.rows} == {t.name for t in tiny if t.family == "lang"}
