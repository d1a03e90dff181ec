"""The generative suite: size, held-out structure, split sizes and disjointness, determinism, wordings."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from loragen.bank.records import TaskRecord
from loragen.bank.suite_llm import (
    EVAL_SPLITS, eval_descriptions, few_shot_examples, load_suite, split_tasks, task_data, training_texts,
)
from loragen.bank.suite_llm import sources as S
from loragen.bank.suite_llm import wordings as W
from loragen.bank.suite_llm.tasks import CELLS


@pytest.fixture(scope="module")
def suite() -> list[TaskRecord]:
    return load_suite(seed=0)


@pytest.fixture(scope="module")
def data(suite):
    return {t.name: task_data(t) for t in suite}


def test_suite_has_150_tasks_in_families_with_15_percent_held_out(suite):
    assert len(suite) >= 150
    assert len({t.name for t in suite}) == len(suite)
    assert all(t.labels == () and t.data_ref["suite"] == "smollm2-gen" for t in suite)
    share = sum(t.split == "heldout" for t in suite) / len(suite)
    assert 0.12 <= share <= 0.18
    families = collections.Counter(t.family for t in suite)
    assert set(families) == set(CELLS) and min(families.values()) >= 15


def test_heldout_tasks_are_new_combinations_of_seen_parts(suite):
    train = [(t.family, t.data_ref["op"], t.data_ref["part"]) for t in suite if t.split == "train"]
    for t in suite:
        if t.split != "heldout":
            continue
        fam, op, part = t.family, t.data_ref["op"], t.data_ref["part"]
        assert any(f == fam and o == op for f, o, _ in train), f"{t.name}: op {op} never in the bank"
        assert any(f == fam and p == part for f, _, p in train), f"{t.name}: part {part} never in the bank"
    assert {t.family for t in suite if t.split == "heldout"} == set(CELLS)  # every family has held-out tasks


def test_splits_are_big_enough_and_disjoint(suite, data):
    for t in suite:
        d = data[t.name]
        assert len(d.train) >= 40 and len(d.val) >= 8 and len(d.test) >= 32, t.name
        assert (len(d.train), len(d.val), len(d.test)) == tuple(t.data_ref[k] for k in ("n_train", "n_val", "n_test"))
        inputs = [set(x for x, _ in split) for split in (d.train, d.val, d.test)]
        assert sum(map(len, inputs)) == len(set.union(*inputs)), f"{t.name}: an input occurs in two splits"


def test_examples_are_short_clean_lines_and_never_copies(suite, data):
    for t in suite:
        for x, y in [p for split in (data[t.name].train, data[t.name].val, data[t.name].test) for p in split]:
            assert x and y and x.casefold() != y.casefold(), (t.name, x, y)
            for s in (x, y):
                assert s == " ".join(s.split()), (t.name, s)  # one line, plain single spaces
                assert len(s) <= 60, (t.name, s)


def test_same_seed_same_suite_and_data_other_seed_other_data(suite):
    again = load_suite(seed=0)
    assert [(t.name, t.split, t.description) for t in again] == [(t.name, t.split, t.description) for t in suite]
    t0 = suite[0]
    assert task_data(t0) == task_data(t0)
    reseeded = dataclasses.replace(t0, data_ref=t0.data_ref | {"seed": 1})
    assert task_data(reseeded).test != task_data(t0).test


def test_every_task_has_eight_varied_paraphrases_and_heldout_wordings_stay_out(suite, data):
    seen_in_training = training_texts(suite)
    for t in suite:
        texts = (t.description, *t.paraphrases, *t.heldout_paraphrases)
        assert len(t.paraphrases) + len(t.heldout_paraphrases) >= 8 and 2 <= len(t.heldout_paraphrases) <= 3
        assert len(set(texts)) == len(texts), t.name
        assert not any("{" in s or "}" in s for s in texts), t.name
        assert not set(t.heldout_paraphrases) & seen_in_training, t.name
        # the inline example is the first training pair, never a val/test input
        example = data[t.name].train[0]
        assert any(f"{example[0]}" in s and f"{example[1]}" in s for s in texts), t.name
        assert example[0] not in {x for x, _ in data[t.name].val + data[t.name].test}
    for fam in CELLS:  # the description is not one fixed template per family
        assert len({t.description.split()[0] for t in suite if t.family == fam}) >= 3, fam


def test_wording_sets_are_not_shared_across_families():
    texts_by_family = collections.defaultdict(set)
    for (family, _), ws in W.WORDINGS.items():
        texts_by_family[family] |= set(ws.train + ws.heldout)
    families = list(texts_by_family)
    for i, a in enumerate(families):
        for b in families[i + 1:]:
            assert not texts_by_family[a] & texts_by_family[b], (a, b)


def test_eval_splits_and_descriptions(suite):
    held = split_tasks(suite, "heldout_task")
    bank = split_tasks(suite, "in_bank")
    assert len(held) + len(bank) == len(suite) and split_tasks(suite, "heldout_paraphrase") == bank
    assert eval_descriptions(held[0], "heldout_task") == [held[0].description]
    assert eval_descriptions(bank[0], "heldout_paraphrase") == list(bank[0].heldout_paraphrases)
    with pytest.raises(ValueError, match="held out"):
        eval_descriptions(held[0], "in_bank")
    with pytest.raises(ValueError, match="unknown evaluation split"):
        split_tasks(suite, "test")  # type: ignore[arg-type]
    assert EVAL_SPLITS == ("in_bank", "heldout_task", "heldout_paraphrase")


def test_few_shot_examples_come_from_training_data(suite, data):
    t = suite[0]
    shots = few_shot_examples(t, n=8)
    assert len(shots) == 8 and set(shots) <= set(data[t.name].train)
    assert few_shot_examples(t, n=8) == shots and few_shot_examples(t, n=8, seed=1) != shots
    with pytest.raises(ValueError, match="training examples"):
        few_shot_examples(t, n=t.data_ref["n_train"] + 1)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no smollm2-gen suite data"):
        task_data(TaskRecord(name="mine", description="d", labels=(), data_ref={"suite": "builtin"}))
    with pytest.raises(ValueError, match="unknown generative-suite family"):
        S.pool("colours", "x", "en")
    with pytest.raises(ValueError, match="has no cell"):
        S.pool("date-name", "month", "xx")
    t = load_suite()[0]
    with pytest.raises(ValueError, match="fewer than"):
        task_data(t, n_train=500)
