"""The wording-robustness split's descriptions: correct label indices, many different forms, never trained on, and
the suite's training texts (which the oracle cache is keyed by) unchanged."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict

import pytest

from loragen.bank.records import TaskRecord
from loragen.bank.suite import wordings as W
from loragen.bank.suite.tasks import _HELDOUT_TEMPLATES, _TRAIN_TEMPLATES, _WHAT, load_suite, training_texts

# sha256 of every task's name, description, paraphrases, held-out paraphrases, labels, family, split and data_ref for
# load_suite(0), as on main before the wording split: the oracle cache (/work/cache/oracles) is keyed by them.
SUITE_SHA256 = "6b2dfc6de49e3f7978f65002d3935d6388829129645f5bed9b5a51bece7bfb50"

_CLAUSES = re.compile(r"[;,.?!/]| and | or | vs | from ")


def bindings(text: str, labels: tuple[str, ...]) -> list[tuple[int, int]]:
    """(label the clause names, index it gives) for every clause of `text` naming one class and one index.

    A clause naming classes and indices in any other combination is ambiguous and fails the test.
    """
    found = []
    for clause in _CLAUSES.split(text):
        names = [k for k, x in enumerate(labels) if re.search(rf"\b{re.escape(x)}\b", clause, re.IGNORECASE)]
        digits = re.findall(r"\b\d\b", clause)
        if len(names) == 1 and len(digits) == 1:
            found.append((names[0], int(digits[0])))
        else:
            assert not (names and digits), f"ambiguous clause {clause!r} in {text!r}"
    return found


def assert_correct(text: str, labels: tuple[str, ...]) -> None:
    """Every class is named and given its own index, and no clause gives a class another one."""
    pairs = bindings(text, labels)
    wrong = [(labels[k], i) for k, i in pairs if k != i]
    assert not wrong, f"{text!r} gives {wrong}"
    assert {k for k, _ in pairs} == set(range(len(labels))), f"{text!r} does not give every class its index"


def _first_mentions(text: str, labels: tuple[str, ...]) -> list[int]:
    return [re.search(rf"\b{re.escape(x)}\b", text, re.IGNORECASE).start() for x in labels]


@pytest.fixture(scope="module")
def tasks() -> list[TaskRecord]:
    return load_suite(0)


def test_suite_training_texts_and_data_are_unchanged(tasks):
    rows = [[t.name, t.description, list(t.paraphrases), list(t.heldout_paraphrases), list(t.labels), t.family,
             t.split, t.data_ref] for t in tasks]
    assert hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest() == SUITE_SHA256


def test_checker_catches_a_wrong_index_and_a_missing_class():
    labels = ("Polish", "Czech")
    assert_correct("Czech (1) vs Polish (0)", labels)
    with pytest.raises(AssertionError):
        assert_correct("Czech (0) vs Polish (1)", labels)
    with pytest.raises(AssertionError):
        assert_correct("If it's Polish say 0, otherwise 1.", labels)


def test_every_wording_of_every_task_gives_each_class_its_own_index(tasks):
    for task in tasks:
        for template, text in zip(W.templates(task), W.all_wordings(task)):
            assert_correct(text, task.labels)
            first = _first_mentions(text, task.labels)
            if W.is_reversed(template):  # the classes are mentioned last label first
                assert first[-1] < first[0], text
            else:
                assert first == sorted(first), text


def test_at_least_twenty_different_forms_per_family(tasks):
    for family in W.FAMILIES:
        task = next(t for t in tasks if t.family == family and len(t.labels) == 2)
        texts = W.all_wordings(task)
        skeletons = {re.sub("|".join(map(re.escape, task.labels)), "X", t, flags=re.IGNORECASE) for t in texts}
        assert len(skeletons) == len(texts) >= 20 + len(W.PAIRS)
        assert sum(W.is_reversed(t) for t in W.templates(task)) >= 8
    three = next(t for t in tasks if len(t.labels) == 3)
    assert len(set(W.all_wordings(three))) >= 20


def test_evaluation_picks_are_deterministic_distinct_and_include_a_reversed_one(tasks):
    for task in tasks:
        picked = W.wording_descriptions(task)
        assert picked == W.wording_descriptions(task) and len(set(picked)) == W.N_PER_TASK
        assert set(picked) <= set(W.all_wordings(task))
        first = _first_mentions(picked[0], task.labels)
        assert first[-1] < first[0]
    used = {w for t in tasks for w in W.wording_descriptions(t)}
    assert len(used) > 0.9 * W.N_PER_TASK * len(tasks)  # spread over the templates, not a few repeated ones
    with pytest.raises(ValueError, match="no hand-written wordings"):
        W.wording_descriptions(TaskRecord("x", "d", ("a", "b"), family="poetry"))


def test_no_wording_is_or_contains_a_training_text_or_template_clause(tasks):
    training = training_texts(tasks) | {p for t in tasks for p in t.heldout_paraphrases}
    lower = [s.lower() for s in training]
    for task in tasks:
        what = _WHAT[task.family]
        clauses = [c.clause.replace("{what}", what).format(k=k, x=x).lower()
                   for c in (*_TRAIN_TEMPLATES, *_HELDOUT_TEMPLATES) for k, x in enumerate(task.labels)]
        for text in W.all_wordings(task):
            low = text.lower()
            assert text not in training
            assert not any(s in low for s in lower), text
            assert not any(c in low for c in clauses), text


def test_training_data_builders_never_see_a_wording(tasks):
    from loragen.hypernet.data import wordings_of
    from loragen.meta.data import training_wordings

    for task in tasks:
        wordings = W.all_wordings(task)
        stored = json.dumps(asdict(task))  # every field of the record training code could read
        assert not any(w in stored for w in wordings), task.name
        seen = set(wordings_of(task, True)) | set(wordings_of(task, False)) | set(training_wordings(task))
        assert not seen & set(wordings)
