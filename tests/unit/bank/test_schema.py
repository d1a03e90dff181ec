"""Schema migrations: applied once, recorded, refused when the bank is newer than the code."""

from __future__ import annotations

import duckdb
import pytest

from bank import schema
from bank.errors import BankError


def test_migrations_apply_once_and_are_recorded(tmp_path):
    con = duckdb.connect(str(tmp_path / "b.duckdb"), config=schema.CONNECTION_CONFIG)
    assert schema.schema_version(con) == 0
    assert schema.migrate(con) == schema.LATEST_VERSION
    assert schema.migrate(con) == schema.LATEST_VERSION  # idempotent
    rows = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert rows == [(v,) for v, _, _ in schema.MIGRATIONS]
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"tasks", "adapters", "tensors", "embeddings", "index_versions", "meta", "schema_version"} <= tables


def test_new_migration_is_applied_on_open(tmp_path, monkeypatch):
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    schema.migrate(con)
    extra = (schema.LATEST_VERSION + 1, "test column", ["ALTER TABLE tasks ADD COLUMN note VARCHAR"])
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, extra])
    monkeypatch.setattr(schema, "LATEST_VERSION", extra[0])
    assert schema.migrate(con) == extra[0]
    assert "note" in {r[0] for r in con.execute("DESCRIBE tasks").fetchall()}


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    schema.migrate(con)
    bad = (schema.LATEST_VERSION + 1, "broken", ["CREATE TABLE half (x INTEGER)", "NOT SQL"])
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, bad])
    monkeypatch.setattr(schema, "LATEST_VERSION", bad[0])
    with pytest.raises(duckdb.Error):
        schema.migrate(con)
    assert schema.schema_version(con) == bad[0] - 1
    assert "half" not in {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def test_bank_from_a_newer_version_is_refused(tmp_path):
    con = duckdb.connect(str(tmp_path / "b.duckdb"))
    schema.migrate(con)
    con.execute("INSERT INTO schema_version VALUES (?, 'future', now())", [schema.LATEST_VERSION + 5])
    with pytest.raises(BankError, match="upgrade loragen"):
        schema.migrate(con)
