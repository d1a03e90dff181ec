"""Sources of the generative suite: every cell is its own input->output map, with no easy shortcut."""

from __future__ import annotations

import collections
import itertools
import random

import pytest

from loragen.bank.suite_llm import load_suite, task_data
from loragen.bank.suite_llm import sources as S
from loragen.bank.suite_llm.tasks import CELLS

MIN_DIFFERENT = 0.3  # two cells fed the same inputs must disagree on at least this share of them


def _probe_map(family: str, op: str, part: str) -> dict[str, str]:
    """The cell's map on inputs drawn with one shared seed (cells whose inputs do not depend on the part then see
    the same inputs, so their outputs can be compared)."""
    build = S.FAMILIES[family][2]
    return dict(build(op, part, random.Random("probe")))


@pytest.mark.parametrize("family", list(CELLS))
def test_no_two_cells_of_a_family_compute_the_same_map(family):
    maps = {(op, part): _probe_map(family, op, part) for op, parts in CELLS[family].items() for part in parts}
    for (a, ma), (b, mb) in itertools.combinations(maps.items(), 2):
        shared = ma.keys() & mb.keys()
        if len(shared) < 0.5 * len(ma):
            continue  # different inputs: different tasks
        differ = sum(ma[x] != mb[x] for x in shared) / len(shared)
        assert differ >= MIN_DIFFERENT, f"{family} cells {a} and {b} agree on {1 - differ:.0%} of their inputs"


def test_no_two_tasks_share_an_example_map():
    seen: dict[frozenset, str] = {}
    for t in load_suite():
        d = task_data(t)
        key = frozenset(d.train + d.val + d.test)
        assert key not in seen, f"{t.name} and {seen[key]} have the same examples"
        seen[key] = t.name


def test_no_constant_answer_and_no_single_rule_shortcut():
    for t in load_suite():
        d = task_data(t)
        outputs = collections.Counter(y for _, y in d.test)
        assert outputs.most_common(1)[0][1] / len(d.test) <= 0.35, f"{t.name}: one answer fits too many tests"
        # the answer is never just the input's first or last whitespace token, except where that is the task
        if (t.family, t.data_ref["op"]) not in {("person-name", "given"), ("person-name", "family"),
                                                ("word-list", "last")}:
            for rule in (lambda x: x.split()[0], lambda x: x.split()[-1]):
                hits = sum(rule(x).strip(",").casefold() == y.casefold() for x, y in d.test)
                assert hits / len(d.test) < 0.5, f"{t.name}: a one-word rule solves it"


def test_closed_answer_sets_are_covered_by_training():
    """Month and weekday names are a closed set: every test answer occurs among the training answers."""
    for t in load_suite():
        if t.family == "date-name":
            d = task_data(t)
            assert {y for _, y in d.test} <= {y for _, y in d.train}, t.name


def test_spaces_are_normalised_and_dates_read_as_written():
    assert S.clean("1\u202f234,50\u00a0€") == "1 234,50 €"
    pairs = dict(S.pool("date-format", "read", "fr_FR"))
    assert all(len(y) == 10 and y[4] == y[7] == "-" for y in pairs.values())
    import datetime
    assert S.english_date(datetime.date(2021, 3, 16)) == "Tuesday, 16 March 2021"
    assert ("Tuesday, 16 March 2021", "março") in [(S.english_date(datetime.date(2021, 3, 16)), "março")]
