"""Schema migrations: applied once, recorded, refused when the bank is newer than the code."""

from __future__ import annotations

import duckdb
import torch
import pytest

from loragen.bank.store import schema
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
    # schema 1 checksummed the bytes alone
    con.execute("INSERT INTO tensors SELECT adapter_id, variant, module, factor, dtype, shape, sha256(data), data "
                "FROM src.tensors")
    con.close()
    with Bank.open(old, encoder=default_encoder()) as bank:
        assert bank.stats()["schema_version"] == schema.LATEST_VERSION
        for adapter_id, want in zip(ids, expected):
            got = bank.get(adapter_id)
            assert all(torch.equal(got.lora_A[k], want.lora_A[k]) for k in want.lora_A)
        module = adapter.modules[0]
        assert torch.equal(bank.get(ids[0], original=True).lora_B[module], adapter.lora_B[module])


def test_version_2_bank_migrates_to_checksums_over_dtype_shape_and_bytes(tmp_path, monkeypatch):
    """Schema 2 checksummed the bytes alone: migration 3 recomputes the checksum of every intact row and leaves a row
    that was already damaged failing."""
    from loragen.bank.embed import default_encoder
    from loragen.bank.errors import ChecksumError
    from loragen.bank.store import Bank
    from loragen.bank.store.blobs import blob_checksum
    from tests.unit.bank._bank_util import minilm_adapter

    src, old = tmp_path / "src.duckdb", tmp_path / "v2.duckdb"
    with Bank.open(src, encoder=default_encoder()) as bank:
        ids = [bank.add(minilm_adapter(seed=5), description="intact", keep_original=True),
               bank.add(minilm_adapter(seed=6), description="damaged before the upgrade")]
        expected = bank.get(ids[0])
    con = duckdb.connect(str(old), config=schema.CONNECTION_CONFIG)
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        m.setattr(schema, "LATEST_VERSION", 2)
        assert schema.migrate(con) == 2
    con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    for table in ("adapters", "embeddings", "meta"):
        con.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
    con.execute("INSERT INTO tensors SELECT blob_id, adapter_id, variant, module, factor, dtype, shape, sha256(data), "
                "data FROM src.tensors")
    blob_id, data = con.execute("SELECT min(blob_id), first(data ORDER BY blob_id) FROM tensors WHERE adapter_id = ?",
                                [ids[1]]).fetchone()
    con.execute("UPDATE tensors SET data = ? WHERE blob_id = ?", [bytes([data[0] ^ 0xFF]) + data[1:], blob_id])
    con.close()
    with Bank.open(old, encoder=default_encoder()) as bank:
        assert bank.stats()["schema_version"] == schema.LATEST_VERSION >= 3
        rows = bank._cur().execute("SELECT blob_id, dtype, shape, sha256, data FROM tensors").fetchall()
        assert len(rows) == 3 * 8  # 4 modules x A/B: canonical + original of the first, canonical of the second
        assert {b for b, dtype, shape, sha, data in rows if sha != blob_checksum(dtype, shape, data)} == {blob_id}
        got = bank.get(ids[0])
        assert all(torch.equal(got.lora_B[k], expected.lora_B[k]) for k in expected.lora_B)
        bank.get(ids[0], original=True)
        with pytest.raises(ChecksumError, match=ids[1]):
            bank.get(ids[1])
