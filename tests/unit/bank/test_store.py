"""Bank: every public method on a real DuckDB file with real FAISS indexes and the real MiniLM encoder."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from loragen.bank.embed import default_encoder
from loragen.bank.errors import (
    AdapterFormatError,
    AdapterShapeError,
    BankError,
    ChecksumError,
    DuplicateAdapterError,
    NonFiniteError,
    NotFoundError,
    UnknownBaseModelError,
)
from loragen.bank.lora import load_peft, save_peft
from loragen.bank.store import Bank, default_bank_path, index_dir
from loragen.bank.store.blobs import blob_checksum
from loragen.bank.store.schema import LATEST_VERSION
from tests.unit.bank._bank_util import minilm_adapter, topic_tasks


@pytest.fixture(scope="session")
def encoder():
    return default_encoder()


@pytest.fixture
def bank(tmp_path, encoder):
    with Bank.open(tmp_path / "bank.duckdb", encoder=encoder) as b:
        yield b


def _delta(adapter, module):
    return adapter.delta_weight(module)


# ---- tasks ------------------------------------------------------------------------------------------------
def test_tasks_round_trip_and_filter_by_split(bank):
    tasks = topic_tasks(10)
    assert bank.add_tasks(tasks) == 10
    assert bank.get_task("topic/03") == tasks[3]
    assert [t.name for t in bank.tasks()] == sorted(t.name for t in tasks)
    assert {t.name for t in bank.tasks(split="heldout")} == {t.name for t in tasks if t.split == "heldout"}
    bank.add_task(replace(tasks[3], description="changed"))  # same name: replaced, not duplicated
    assert bank.get_task("topic/03").description == "changed" and len(bank.tasks()) == 10
    with pytest.raises(NotFoundError, match="no task named 'nope'"):
        bank.get_task("nope")


# ---- add / get / record / adapters / delete ----------------------------------------------------------------
def test_add_stores_canonical_form_with_same_delta_and_metadata(bank):
    adapter = minilm_adapter(seed=1, r=4, alpha=16.0)
    adapter_id = bank.add(adapter, task="topic/01", description="about baking", metrics={"acc": 0.9}, source="t")
    got = bank.get(adapter_id)
    assert got.metadata["id"] == adapter_id and got.metadata["task"] == "topic/01"
    assert got.metadata["description"] == "about baking" and got.metadata["canonical"] is True
    assert got.lora_alpha == got.r == 4  # scaling folded in
    for m in adapter.modules:
        torch.testing.assert_close(_delta(got, m), _delta(adapter, m), atol=1e-5, rtol=1e-4)
    rec = bank.record(adapter_id)
    assert rec.sha256 == replace(got, metadata={}).sha256() and rec.canonical
    assert rec.metrics == {"acc": 0.9} and rec.source == "t" and rec.kind == "final"
    assert rec.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(NotFoundError, match="without its original"):
        bank.get(adapter_id, original=True)


def test_keep_original_returns_the_factors_as_given(bank):
    adapter = minilm_adapter(seed=2, r=4, alpha=8.0)
    adapter_id = bank.add(adapter, keep_original=True)
    orig = bank.get(adapter_id, original=True)
    assert orig.r == 4 and orig.lora_alpha == 8.0
    for m in adapter.modules:
        assert torch.equal(orig.lora_A[m], adapter.lora_A[m]) and torch.equal(orig.lora_B[m], adapter.lora_B[m])


def test_adapters_filters_and_delete(bank):
    a = bank.add(minilm_adapter(seed=3), task="t1", kind="final")
    b = bank.add(minilm_adapter(seed=4), task="t1", kind="checkpoint")
    c = bank.add(minilm_adapter(seed=5), task="t2", kind="final")
    assert [r.id for r in bank.adapters()] == [a, b, c]
    assert [r.id for r in bank.adapters(task="t1")] == [a, b]
    assert [r.id for r in bank.adapters(task="t1", kind="final")] == [a]
    bank.delete(b)
    assert [r.id for r in bank.adapters()] == [a, c]
    with pytest.raises(NotFoundError):
        bank.get(b)
    with pytest.raises(NotFoundError):
        bank.delete(b)
    assert b not in {h.id for h in bank.search_adapter(minilm_adapter(seed=4), k=3)}
    assert _snapshot_counts(bank) == {"tensors": 2 * 8, "embeddings": 2}  # 4 modules x A/B, weight space only


def _snapshot_counts(bank):
    cur = bank._cur()
    return {t: cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tensors", "embeddings")}


# ---- import / export -------------------------------------------------------------------------------------
def test_import_and_export_peft_round_trip(bank, tmp_path):
    adapter = minilm_adapter(seed=6, r=4, alpha=4.0)
    src = save_peft(adapter, tmp_path / "src")
    adapter_id = bank.import_peft(src, description="detect sentences about chess", keep_original=True)
    rec = bank.record(adapter_id)
    assert rec.kind == "uploaded" and rec.source == str(src.resolve())
    out = bank.export_peft(adapter_id, tmp_path / "out")
    back = load_peft(out)
    for m in adapter.modules:
        torch.testing.assert_close(back.delta_weight(m), adapter.delta_weight(m), atol=1e-5, rtol=1e-4)
    orig = load_peft(bank.export_peft(adapter_id, tmp_path / "orig", original=True))
    assert torch.equal(orig.lora_A[adapter.modules[0]], adapter.lora_A[adapter.modules[0]])


# ---- duplicates and bad input: clear errors, bank unchanged ---------------------------------------------------
def test_adding_an_adapter_again_finds_it_without_canonicalising_it_again(bank, monkeypatch):
    import loragen.bank.store.adapters as adapters_module

    calls = []
    real = adapters_module.canonicalize
    monkeypatch.setattr(adapters_module, "canonicalize", lambda a, *args: calls.append(1) or real(a, *args))
    adapter = minilm_adapter(seed=11)
    first = bank.add(adapter, description="x")
    assert bank.add(adapter, description="x", on_duplicate="skip") == first and len(calls) == 1
    bank.delete(first)  # a remembered checksum whose adapter is gone: stored anew, canonicalised again
    second = bank.add(adapter, description="x")
    assert second != first and len(calls) == 2 and bank.record(second).sha256 == bank.get(second).sha256()


def test_duplicate_import_raises_naming_the_existing_id_or_skips(bank, tmp_path):
    src = save_peft(minilm_adapter(seed=7), tmp_path / "a")
    first = bank.import_peft(src, description="x")
    before = _snapshot_counts(bank)
    with pytest.raises(DuplicateAdapterError, match=first):
        bank.import_peft(src, description="x")
    assert bank.import_peft(src, on_duplicate="skip") == first
    assert _snapshot_counts(bank) == before
    assert len([r for r in bank.adapters() if r.id == first]) == 1
    # an adapter read back from the bank (already canonical) and added again is the same adapter too
    with pytest.raises(DuplicateAdapterError, match=first):
        bank.add(bank.get(first), description="again")


@pytest.mark.parametrize("case", ["wrong_shape_for_base", "inconsistent_shapes", "pickle", "not_safetensors",
                                  "unknown_base", "non_finite"])
def test_bad_input_gets_a_clear_error_and_leaves_the_bank_unchanged(bank, tmp_path, case):
    bank.add(minilm_adapter(seed=8), description="existing")
    before = _snapshot_counts(bank)
    src = tmp_path / case
    if case == "wrong_shape_for_base":  # consistent adapter, but MiniLM's query is 384x384, not 384x200
        adapter = minilm_adapter(seed=9)
        adapter = replace(adapter, lora_A={m: a[:, :200] for m, a in adapter.lora_A.items()})
        save_peft(adapter, src)
        err, match = AdapterShapeError, "does not fit"
    elif case == "inconsistent_shapes":  # rank of A disagrees with the config's r
        save_peft(minilm_adapter(seed=9), src)
        cfg = json.loads((src / "adapter_config.json").read_text())
        (src / "adapter_config.json").write_text(json.dumps({**cfg, "r": 8}))
        err, match = AdapterShapeError, "rank does not match"
    elif case == "pickle":
        src.mkdir()
        save_peft(minilm_adapter(seed=9), tmp_path / "tmp")
        (src / "adapter_config.json").write_text((tmp_path / "tmp" / "adapter_config.json").read_text())
        (src / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
        err, match = AdapterFormatError, "pickle"
    elif case == "not_safetensors":
        save_peft(minilm_adapter(seed=9), src)
        (src / "adapter_model.safetensors").write_bytes(b"this is not a safetensors file")
        err, match = AdapterFormatError, "not a readable safetensors"
    elif case == "unknown_base":
        save_peft(minilm_adapter(seed=9, base_model="org/no-such-model"), src)
        err, match = UnknownBaseModelError, "unknown base model 'org/no-such-model'"
    else:
        bad = minilm_adapter(seed=9)
        bad.lora_A[bad.modules[0]][0, 0] = float("nan")
        tensors = {f"base_model.model.{m}.lora_{f}.weight": t for m, a, b in bad.items() for f, t in (("A", a),
                                                                                                    ("B", b))}
        save_peft(minilm_adapter(seed=9), src)
        save_file(tensors, src / "adapter_model.safetensors")
        err, match = NonFiniteError, "NaN"
    with pytest.raises(err, match=match):
        bank.import_peft(src, description="bad")
    assert _snapshot_counts(bank) == before and len(bank.adapters()) == 1


def test_checksum_mismatch_on_read_names_the_adapter(bank):
    adapter_id = bank.add(minilm_adapter(seed=10), description="to be damaged")
    cur = bank._cur()
    data = cur.execute("SELECT data FROM tensors WHERE adapter_id = ? LIMIT 1", [adapter_id]).fetchone()[0]
    damaged = bytearray(data)
    damaged[0] ^= 0xFF
    cur.execute("UPDATE tensors SET data = ? WHERE adapter_id = ? AND data = ?", [bytes(damaged), adapter_id, data])
    with pytest.raises(ChecksumError, match=adapter_id):
        bank.get(adapter_id)


def _first_blob(bank, adapter_id):
    """(blob_id, dtype, shape, data) of the adapter's first stored tensor (canonical A of its first module)."""
    return bank._cur().execute("SELECT blob_id, dtype, shape, data FROM tensors WHERE adapter_id = ? "
                               "ORDER BY blob_id LIMIT 1", [adapter_id]).fetchone()


def _damage(bank, adapter_id, damage):
    """Damage one stored row of the adapter with a real UPDATE, as a bad disk, a bad copy or a hand edit would."""
    cur = bank._cur()
    blob_id, dtype, shape, data = _first_blob(bank, adapter_id)
    set_blob = "UPDATE tensors SET dtype = ?, shape = ?, data = ?, sha256 = ? WHERE blob_id = ?"
    if damage == "dtype":  # float32 bytes read as float16: twice as many values
        cur.execute("UPDATE tensors SET dtype = 'float16' WHERE blob_id = ?", [blob_id])
    elif damage == "dtype_unknown":
        cur.execute("UPDATE tensors SET dtype = 'int32' WHERE blob_id = ?", [blob_id])
    elif damage == "shape":  # A (4, 384) recorded as (384, 4): same number of values
        cur.execute("UPDATE tensors SET shape = '[384, 4]' WHERE blob_id = ?", [blob_id])
    elif damage == "truncated":  # BLOB cut short, its sha rewritten over the remaining bytes
        cur.execute("UPDATE tensors SET data = ?, sha256 = ? WHERE blob_id = ?",
                    [data[:100], hashlib.sha256(data[:100]).hexdigest(), blob_id])
    elif damage == "truncated_resealed":  # cut to 2 of its 4 rows, shape and sha rewritten to match each other
        half = data[: len(data) // 2]
        cur.execute(set_blob, [dtype, "[2, 384]", half, blob_checksum(dtype, "[2, 384]", half), blob_id])
    elif damage == "dtype_resealed":  # the bytes reinterpreted as float16 (8, 384), sha rewritten to match
        cur.execute(set_blob, ["float16", "[8, 384]", data, blob_checksum("float16", "[8, 384]", data), blob_id])
    elif damage == "bytes_resealed":  # one value changed and the BLOB's sha rewritten: only the adapter sha catches it
        changed = bytes([data[0] ^ 0xFF]) + data[1:]
        cur.execute(set_blob, [dtype, shape, changed, blob_checksum(dtype, shape, changed), blob_id])
    else:
        cur.execute("UPDATE adapters SET metadata = '{\"canonical\": tru' WHERE id = ?", [adapter_id])


@pytest.mark.parametrize("damage", ["dtype", "dtype_unknown", "shape", "truncated", "truncated_resealed",
                                    "dtype_resealed", "bytes_resealed", "metadata"])
def test_damaged_stored_rows_raise_checksum_error_naming_the_adapter(bank, damage):
    keep = bank.add(minilm_adapter(seed=11), description="left alone")
    adapter_id = bank.add(minilm_adapter(seed=12), description="to be damaged")
    _damage(bank, adapter_id, damage)
    what = "metadata does not match what was written" if damage == "metadata" else "tensors do not match their checksum"
    with pytest.raises(ChecksumError, match=rf"adapter '{adapter_id}': stored {what} .*; the bank .* is corrupt: "
                                            "restore it from a backup or delete the adapter"):
        bank.get(adapter_id)
    if damage == "metadata":  # every read of the row says so, not only get()
        for read in (lambda: bank.record(adapter_id), bank.adapters):
            with pytest.raises(ChecksumError, match=adapter_id):
                read()
    bank.get(keep)  # the other adapter is untouched
    bank.delete(adapter_id)  # the advice in the message works
    assert [r.id for r in bank.adapters()] == [keep]


def test_tensor_checksums_cover_dtype_shape_and_bytes(bank):
    adapter_id = bank.add(minilm_adapter(seed=13))
    rows = bank._cur().execute("SELECT dtype, shape, sha256, data FROM tensors WHERE adapter_id = ?",
                               [adapter_id]).fetchall()
    assert len(rows) == 8
    for dtype, shape, sha, data in rows:
        assert sha == blob_checksum(dtype, shape, data)
        assert sha == hashlib.sha256(f"{dtype};{shape};".encode() + data).hexdigest()
        assert sha != blob_checksum("float16", shape, data) and sha != blob_checksum(dtype, "[1, 1536]", data)


# ---- search -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topic_bank(tmp_path_factory, encoder):
    """50 tasks, one adapter each, half indexed by a re-index and half still in the delta."""
    path = tmp_path_factory.mktemp("topics") / "bank.duckdb"
    tasks = topic_tasks(50)
    with Bank.open(path, encoder=encoder) as b:
        b.add_tasks(tasks)
        for i, task in enumerate(tasks):
            b.add(minilm_adapter(seed=100 + i, r=2, layers=(0,)), task=task.name)
            if i == 24:
                b.reindex()
        assert b.stats()["indexes"]["text"]["delta"] == 25
        yield b, tasks


def test_search_text_puts_the_right_task_first_for_its_paraphrases(topic_bank):
    bank, tasks = topic_bank
    for phrases in ("paraphrases", "heldout_paraphrases"):
        wrong = [t.name for t in tasks if bank.search_text(getattr(t, phrases)[0], k=3)[0].task != t.name]
        assert not wrong, f"{phrases}: wrong first hit for {wrong}"
    hits = bank.search_text(tasks[7].heldout_paraphrases[0], k=5)
    assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_exclude_tasks(topic_bank):
    bank, tasks = topic_bank
    query = tasks[30].paraphrases[0]
    hits = bank.search_text(query, k=5, exclude_tasks={tasks[30].name})
    assert len(hits) == 5 and tasks[30].name not in {h.task for h in hits}


def test_search_adapter_finds_the_same_delta_and_near_neighbours(topic_bank):
    bank, tasks = topic_bank
    probe = minilm_adapter(seed=100 + 40, r=2, layers=(0,))
    hits = bank.search_adapter(probe, k=3)
    assert hits[0].task == tasks[40].name and hits[0].score == pytest.approx(1.0, abs=1e-4)
    noisy = replace(probe, lora_B={m: b + 0.02 * torch.randn_like(b) for m, b in probe.lora_B.items()})
    assert bank.search_adapter(noisy, k=1)[0].task == tasks[40].name


def test_search_kind_filter_widens_until_k_hits_of_that_kind(bank):
    finals = [bank.add(minilm_adapter(seed=70 + i, r=2, layers=(0,)), description=f"recipes for soup {i}")
              for i in range(2)]
    for i in range(12):
        bank.add(minilm_adapter(seed=80 + i, r=2, layers=(0,)), description=f"sentences about volcanoes {i}",
                 kind="uploaded")
    assert {h.id for h in bank.search_text("volcanoes", k=4)}.isdisjoint(finals)
    hits = bank.search_text("volcanoes", k=2, kind="final")
    assert sorted(h.id for h in hits) == sorted(finals)
    assert len(bank.search_text("volcanoes", k=5, kind="final")) == 2  # the bank has only two
    assert bank.search_text("volcanoes", k=3, kind="checkpoint") == []
    probe = minilm_adapter(seed=80, r=2, layers=(0,))
    assert {h.id for h in bank.search_adapter(probe, k=3, kind="final")} == set(finals)
    with pytest.raises(ValueError, match="kind must be one of"):
        bank.search_text("volcanoes", kind="finals")


# ---- indexes: persistence, delta, corruption -------------------------------------------------------------------
def test_reindex_persists_and_delta_makes_new_adapters_searchable_at_once(tmp_path, encoder):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=encoder) as b:
        first = b.add(minilm_adapter(seed=20), description="sentences about volcanoes")
        info = b.reindex()
        assert info["text"]["version"] == 1 and info["text"]["method"] == "flat" and info["text"]["ntotal"] == 1
        second = b.add(minilm_adapter(seed=21), description="sentences about submarines")
        assert b.search_text("submarines", k=1)[0].id == second  # delta, before any re-index
    files = sorted(p.name for p in index_dir(path).iterdir())
    assert files == ["text-v1.faiss", "weight-v1.faiss"]
    with Bank.open(path, encoder=encoder) as b:
        idx = b.stats()["indexes"]["text"]
        assert (idx["version"], idx["indexed"], idx["delta"]) == (1, 1, 1)
        assert b.search_text("volcanoes", k=1)[0].id == first and b.search_text("submarines", k=1)[0].id == second
        b.reindex()
        assert sorted(p.name for p in index_dir(path).iterdir()) == ["text-v2.faiss", "weight-v2.faiss"]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_damaged_index_file_is_detected_and_rebuilt_from_duckdb(tmp_path, encoder, damage, caplog):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=encoder) as b:
        ids = [b.add(minilm_adapter(seed=30 + i), description=f"task about {t}") for i, t in
               enumerate(["pizza", "tennis", "robots"])]
        b.reindex()
    target = index_dir(path) / "text-v1.faiss"
    if damage == "missing":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    with Bank.open(path, encoder=encoder) as b:
        assert "rebuilding the text index" in caplog.text
        assert b.stats()["indexes"]["text"]["version"] == 2
        assert b.search_text("robots", k=1)[0].id == ids[2]


def test_approximate_index_chosen_above_threshold_and_recorded(tmp_path, encoder):
    with Bank.open(tmp_path / "bank.duckdb", encoder=encoder, approx_threshold=3) as b:
        for i in range(5):
            b.add(minilm_adapter(seed=40 + i, r=2, layers=(0,)), description=f"item {i}")
        info = b.reindex()
        assert info["weight"]["method"] == "hnsw" and info["weight"]["params"]["m"] == 32
        row = b._cur().execute("SELECT method, ntotal FROM index_versions WHERE space = 'weight'").fetchone()
        assert row == ("hnsw", 5)


# ---- schema, files, processes ---------------------------------------------------------------------------------
def test_tensor_blobs_are_stored_uncompressed_so_lookups_stay_flat(tmp_path, encoder):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=encoder) as b:
        for i in range(3):
            b.add(minilm_adapter(seed=50 + i))
        b._cur().execute("CHECKPOINT")
        rows = b._cur().execute(
            "SELECT DISTINCT compression FROM pragma_storage_info('tensors') WHERE column_name = 'data' "
            "AND segment_type = 'BLOB'"
        ).fetchall()
    assert rows == [("Uncompressed",)]


def test_second_process_gets_a_clear_error(tmp_path, encoder):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=encoder):
        code = f"from loragen.bank.store import Bank\nBank.open({str(path)!r})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.cwd())
    assert proc.returncode != 0 and "one read-write process per file" in proc.stderr


def test_a_file_that_is_not_a_bank_is_refused(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database")
    with pytest.raises(BankError, match="not a valid DuckDB database file"):
        Bank.open(path)


def test_default_path_follows_loragen_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path))
    assert default_bank_path() == tmp_path / "bank.duckdb"
    monkeypatch.delenv("LORAGEN_HOME")
    assert default_bank_path().name == "bank.duckdb" and "loragen" in str(default_bank_path())


def test_stats_counts(bank):
    bank.add_tasks(topic_tasks(2))
    bank.add(minilm_adapter(seed=60), task="topic/00")
    stats = bank.stats()
    assert stats["adapters"] == 1 and stats["tasks"] == 2 and stats["schema_version"] == LATEST_VERSION
    assert stats["tensor_bytes"] == 4 * (4 * 384 * 2) * 4  # 4 modules, A and B of 4x384 floats
    assert stats["indexes"]["text"]["delta"] == 1 and stats["indexes"]["text"]["dim"] == 384
    assert stats["text_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    json.dumps(stats)


def test_other_text_encoder_is_refused(tmp_path, encoder):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=encoder) as b:
        b.add(minilm_adapter(seed=61), description="x")
    other = replace_name(encoder, "some/other-model")
    with pytest.raises(BankError, match="made with 'sentence-transformers/all-MiniLM-L6-v2'"):
        Bank.open(path, encoder=other)


def replace_name(encoder, name):
    import copy

    other = copy.copy(encoder)
    other.name = name
    return other


def test_weight_embeddings_in_bank_match_weight_embedding(bank):
    from loragen.bank.embed import weight_embedding

    adapter = minilm_adapter(seed=62)
    adapter_id = bank.add(adapter)
    blob = bank._cur().execute("SELECT vector FROM embeddings WHERE adapter_id = ? AND space = 'weight'",
                               [adapter_id]).fetchone()[0]
    np.testing.assert_allclose(np.frombuffer(blob, dtype=np.float32), weight_embedding(adapter), atol=1e-5)


def test_task_lists_are_remembered_until_a_task_is_written(bank, monkeypatch):
    from loragen.bank.records import TaskRecord

    bank.add_task(TaskRecord(name="t/held", description="held out", labels=("a", "b"), split="heldout"))
    assert [t.name for t in bank.tasks(split="heldout")] == ["t/held"]
    queries = []
    real_cursor = bank._db.cursor
    monkeypatch.setattr(bank._db, "cursor", lambda: queries.append(1) or real_cursor())
    assert [t.name for t in bank.tasks(split="heldout")] == ["t/held"] and not queries  # remembered
    bank.add_task(TaskRecord(name="t/held2", description="also held out", labels=("a", "b"), split="heldout"))
    assert [t.name for t in bank.tasks(split="heldout")] == ["t/held", "t/held2"]
    bank.put_task(TaskRecord(name="t/held3", description="and this", labels=("a", "b"), split="heldout"), [])
    assert len(bank.tasks(split="heldout")) == 3 and len(bank.tasks()) >= 3


def test_a_task_list_read_while_a_task_is_written_is_not_remembered(bank, monkeypatch):
    from loragen.bank.records import TaskRecord

    tasks = bank._tasks
    real_cursor = bank._db.cursor

    def cursor_that_sees_a_write_land():  # the write commits between this read's SELECT and its remembering
        cur = real_cursor()
        monkeypatch.setattr(bank._db, "cursor", real_cursor)
        tasks._forget_listed()
        return cur

    bank.add_task(TaskRecord(name="t/a", description="a", labels=("x", "y"), split="heldout"))
    monkeypatch.setattr(bank._db, "cursor", cursor_that_sees_a_write_land)
    assert [t.name for t in bank.tasks(split="heldout")] == ["t/a"]
    assert "heldout" not in tasks._listed  # a stale list would have outlived the write
