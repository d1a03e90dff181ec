"""The bank's DuckDB connection runs under a memory limit (DuckDB's own default, 80% of RAM, let a server that keeps
storing adapters grow with the bank)."""

from __future__ import annotations

import duckdb
import pytest

from loragen.bank.errors import BankError
from loragen.bank.store import Bank
from loragen.bank.store.schema import DEFAULT_MEMORY_LIMIT


def _setting(size: str) -> str:
    """How DuckDB reports `size` as its memory_limit (it normalises the unit)."""
    with duckdb.connect(":memory:", config={"memory_limit": size}) as con:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def _limit(bank: Bank) -> str:
    return bank._cur().execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_default_limit_and_a_chosen_one_are_in_force(tmp_path):
    with Bank.open(tmp_path / "a.duckdb") as bank:
        assert _limit(bank) == _setting(DEFAULT_MEMORY_LIMIT)
    with Bank.open(tmp_path / "a.duckdb", memory_limit="96MB") as bank:
        assert _limit(bank) == _setting("96MB") != _setting(DEFAULT_MEMORY_LIMIT)


def test_a_limit_that_is_not_a_size_is_refused_before_the_file_is_touched(tmp_path):
    with pytest.raises(BankError, match="memory_limit 'lots' is not a size"):
        Bank.open(tmp_path / "b.duckdb", memory_limit="lots")
    assert not (tmp_path / "b.duckdb").exists()
