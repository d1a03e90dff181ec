"""A user's task keeps its examples in the bank (schema v4) and training sources read them from there."""

from __future__ import annotations

import pytest

from loragen.bank.errors import NotFoundError, TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.store import Bank
from loragen.bank.tasks import STORED, BankSource, task_data


def _task(name: str, labels=("Polish", "Czech")) -> TaskRecord:
    return TaskRecord(name=name, description=f"task {name}", labels=labels, data_ref={"provider": STORED})


def test_stored_examples_round_trip_for_both_kinds(tmp_path):
    with Bank.open(tmp_path / "b.duckdb", encoder=None) as bank:
        bank.add_tasks([_task("u/cls"), _task("u/gen", labels=())])
        assert bank.set_task_data("u/cls", [("Dzień dobry", 0), ("Dobrý den", 1)], test=[("Cześć", 0)]) == 3
        bank.set_task_data("u/gen", [("2024-03-05", "March 5, 2024")], val=[("2024-01-02", "January 2, 2024")])
        assert bank.task_data("u/cls") == {"train": [("Dzień dobry", 0), ("Dobrý den", 1)], "val": [],
                                           "test": [("Cześć", 0)]}
        assert bank.task_data("u/gen")["val"] == [("2024-01-02", "January 2, 2024")]
        bank.set_task_data("u/cls", [("x", 1)])  # replaces, never appends
        assert bank.task_data("u/cls")["train"] == [("x", 1)]
        source = BankSource(bank)
        assert source.data(bank.get_task("u/gen")).train == [("2024-03-05", "March 5, 2024")]
        assert source.examples(bank.get_task("u/cls"), n=5, seed=0) == [("x", 1)]


def test_bad_examples_and_unknown_tasks_write_nothing(tmp_path):
    with Bank.open(tmp_path / "b.duckdb", encoder=None) as bank:
        bank.add_task(_task("u/cls"))
        bank.set_task_data("u/cls", [("a", 0)])
        with pytest.raises(ValueError, match="train\\[1\\]"):
            bank.set_task_data("u/cls", [("b", 1), ("c", 1.5)])
        with pytest.raises(ValueError, match="unknown split"):
            bank._tasks.set_data("u/cls", {"dev": [("d", 0)]})
        assert bank.task_data("u/cls")["train"] == [("a", 0)]
        with pytest.raises(NotFoundError):
            bank.set_task_data("u/nope", [("a", 0)])


def test_stored_task_without_data_or_bank_is_a_clear_error(tmp_path):
    with Bank.open(tmp_path / "b.duckdb", encoder=None) as bank:
        bank.add_task(_task("u/empty"))
        with pytest.raises(TaskDataError, match="none are stored"):
            BankSource(bank).data(bank.get_task("u/empty"))
    with pytest.raises(TaskDataError, match="keeps its examples in the bank"):
        task_data(_task("u/empty"))
