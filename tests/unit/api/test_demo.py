"""`loragen demo` picks a held-out task and a bank of related in-bank tasks that never includes it."""

from __future__ import annotations

import pytest

from loragen.api.commands.demo import pick_heldout, related_tasks
from loragen.bank.errors import LoragenError
from loragen.bank.suite import load_suite


@pytest.fixture(scope="module")
def specs():
    return load_suite(0)


def test_bank_is_related_and_excludes_the_heldout_task(specs):
    target = pick_heldout(specs, None)
    assert target.split == "heldout" and target.family == "lang" and len(target.labels) == 2
    bank = related_tasks(specs, target, 16)
    assert len(bank) == 16 and all(s.split == "train" for s in bank)
    assert target.name not in {s.name for s in bank}
    assert set(bank[0].labels) & set(target.labels)  # the closest tasks share a label with the held-out one
    assert related_tasks(specs, target, 16) == bank  # deterministic


def test_named_task_must_be_heldout(specs):
    in_bank = next(s for s in specs if s.split == "train")
    with pytest.raises(LoragenError, match="in-bank"):
        pick_heldout(specs, in_bank.name)
    with pytest.raises(LoragenError, match="no suite task"):
        pick_heldout(specs, "no/such-task")


def test_no_shipped_generator_means_no_shipped_step():
    """Tests see an empty shipped folder (tests/conftest.py): the demo then shows the demo bank's generator only."""
    from loragen.api.commands.demo import shipped_generation
    from loragen.bank.generator import GenerationRequest

    assert shipped_generation(GenerationRequest(description="label 0 if Polish, label 1 if Czech")) is None
