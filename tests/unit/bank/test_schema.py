"""Schema migrations: applied once, recorded, refused when the bank is newer than the code."""

from __future__ import annotations

import duckdb
import torch
import pytest

from loragen.bank import schema
from loragen.bank.errors import BankError


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


def test_version_1_bank_with_adapters_migrates_to_blob_ids(tmp_path, monkeypatch):
    """A bank written at schema 1 (tensors without blob_id) opens, migrates, and returns the same adapters."""
    from loragen.bank.embed import default_encoder
    from loragen.bank.store import Bank
    from tests.unit.bank._bank_util import minilm_adapter

    src, old = tmp_path / "src.duckdb", tmp_path / "v1.duckdb"
    adapter = minilm_adapter(seed=3)
    with Bank.open(src, encoder=default_encoder()) as bank:
        ids = [bank.add(adapter, description="v1 adapter", keep_original=True),
               bank.add(minilm_adapter(seed=4), description="second")]
        expected = [bank.get(i) for i in ids]
    con = duckdb.connect(str(old), config=schema.CONNECTION_CONFIG)
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(schema, "LATEST_VERSION", 1)
        assert schema.migrate(con) == 1
    assert "blob_id" not in {r[0] for r in con.execute("DESCRIBE tensors").fetchall()}
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    for table in ("adapters", "embeddings", "meta"):
        con.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
    con.execute("INSERT INTO tensors SELECT adapter_id, variant, module, factor, dtype, shape, sha256, data "
                "FROM src.tensors")
    con.close()
    with Bank.open(old, encoder=default_encoder()) as bank:
        assert bank.stats()["schema_version"] == schema.LATEST_VERSION
        for adapter_id, want in zip(ids, expected):
            got = bank.get(adapter_id)
            assert all(torch.equal(got.lora_A[k], want.lora_A[k]) for k in want.lora_A)
        module = adapter.modules[0]
        assert torch.equal(bank.get(ids[0], original=True).lora_B[module], adapter.lora_B[module])
