"""A task and its examples go into the bank together (one transaction): all of it or nothing."""

from __future__ import annotations

import dataclasses

import pytest

from loragen.bank.records import TaskRecord
from loragen.bank.store import Bank
from loragen.bank.tasks import STORED


def _task(description: str = "tell Polish from Czech") -> TaskRecord:
    return TaskRecord(name="u/cls", description=description, labels=("pl", "cs"), data_ref={"provider": STORED})


def test_put_task_stores_and_replaces_record_and_examples_together(tmp_path):
    with Bank.open(tmp_path / "b.duckdb", encoder=None) as bank:
        assert bank.put_task(_task(), [("a", 0), ("b", 1)], val=[("c", 0)], test=[("d", 1)]) == 4
        assert bank.task_example_counts() == {"u/cls": {"train": 2, "val": 1, "test": 1}}
        assert bank.put_task(_task("new wording"), [("e", 1)]) == 1
        assert bank.get_task("u/cls").description == "new wording"
        assert bank.task_data("u/cls") == {"train": [("e", 1)], "val": [], "test": []}
        assert bank.task_example_counts() == {"u/cls": {"train": 1, "val": 0, "test": 0}}


def test_a_bad_example_leaves_record_and_examples_as_they_were(tmp_path):
    with Bank.open(tmp_path / "b.duckdb", encoder=None) as bank:
        bank.put_task(_task(), [("a", 0)])
        with pytest.raises(ValueError, match=r"train\[1\]"):
            bank.put_task(_task("changed"), [("b", 1), ("c", 1.5)])
        with pytest.raises(ValueError, match="needs a name and a description"):
            bank.put_task(dataclasses.replace(_task(), description=""), [("b", 1)])
        assert bank.get_task("u/cls").description == "tell Polish from Czech"
        assert bank.task_data("u/cls")["train"] == [("a", 0)]
        with pytest.raises(ValueError, match=r"train\[0\]"):
            bank.put_task(TaskRecord(name="u/other", description="d", labels=()), [(1, "x")])
        assert [t.name for t in bank.tasks()] == ["u/cls"]
