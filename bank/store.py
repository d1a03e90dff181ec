"""`Bank`: the LoRA bank. Adapters, tasks and embeddings in one DuckDB file; FAISS indexes beside it.

Usage::

    with Bank.open("bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="lang/pl-vs-cs", description="...", labels=("pl", "cs")))
        adapter_id = bank.add(adapter, task="lang/pl-vs-cs")
        hits = bank.search_text("tell Polish from Czech", k=5)
        same = bank.get(adapter_id)                    # canonical form, checksums verified
        bank.reindex()                                  # rebuild the FAISS indexes atomically

Guarantees:
- Every adapter is written in one transaction (row, tensors, embeddings): a crash or an error leaves either the
  whole adapter or nothing. Searches see an adapter only after its transaction committed.
- Adapters are stored in canonical form (`bank.lora.canonicalize`); `keep_original=True` keeps the factors as given.
- Each tensor BLOB carries its sha256, checked on every read, and the rebuilt adapter must match the recorded
  `LoraAdapter.sha256`; a mismatch raises `ChecksumError` naming the adapter.
- Duplicates: an adapter whose canonical checksum is already in the bank raises `DuplicateAdapterError` naming the
  existing id (`on_duplicate="error"`, the default), or returns the existing id unchanged (`on_duplicate="skip"`).
- Threads: one `Bank` may be shared by threads of one process (the service). Writes are serialised; searches read
  immutable index snapshots and never wait for a write or a re-index. DuckDB lets only one process open the file
  read-write: a second process gets a `BankError` saying so. Open one `Bank` per file per process and share it
  (two `Bank` objects on one file would each keep their own index snapshots).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import torch

from loragen.bank.base_model import canonical_base_model_id, resolve_base_model
from loragen.bank.device import dtype_name, resolve_dtype
from loragen.bank.embed import TextEncoder, default_encoder, weight_embedding
from loragen.bank.errors import (
    BankError,
    ChecksumError,
    DuplicateAdapterError,
    IndexCorruptError,
    NotFoundError,
)
from loragen.bank.index import APPROX_THRESHOLD, VectorIndex, build_index, read_index, to_gpu_if_available, write_index
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import canonicalize
from loragen.bank.lora.layers import target_weights
from loragen.bank.lora.peft_format import load_peft, save_peft
from loragen.bank import paths
from loragen.bank.records import AdapterKind, AdapterRecord, SearchHit, TaskRecord
from loragen.bank.schema import BLOBS_PER_ADAPTER, CONNECTION_CONFIG, migrate

logger = logging.getLogger(__name__)

SPACES = ("text", "weight")
"""Embedding spaces: descriptions (sentence-transformers) and weights (`weight_embedding`)."""
WEIGHT_MODEL = "delta-sketch-v1"
OnDuplicate = Literal["error", "skip"]
_KINDS = ("final", "checkpoint", "generated", "uploaded")


def default_bank_path() -> Path:
    """The default bank file (`loragen.bank.paths.bank_path`)."""
    return paths.bank_path()


index_dir = paths.index_dir


@dataclass(frozen=True)
class _Entry:
    """What a search hit needs about a live adapter, kept in memory so searches never touch DuckDB."""

    id: str
    task: str | None
    description: str | None


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _js(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class Bank:
    """The LoRA bank. Create it with `Bank.open`; see the module docstring for its guarantees."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, encoder: TextEncoder | None, threshold: int):
        self.path = path
        self.index_dir = index_dir(path)
        self.approx_threshold = threshold
        self._con = con
        self._encoder = encoder
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._write_lock = threading.RLock()  # one writer at a time (DuckDB transactions are per connection)
        self._reindex_lock = threading.Lock()  # at most one re-index at a time
        self._state_lock = threading.Lock()  # guards swapping the snapshots below (never held during I/O)
        self._entries: dict[int, _Entry] = {}
        self._indexes: dict[str, VectorIndex] = {space: VectorIndex() for space in SPACES}
        self._base_models: dict[str, torch.nn.Module] = {}
        self._closed = False

    # ---- opening and closing ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        encoder: TextEncoder | str | None = None,
        approx_threshold: int = APPROX_THRESHOLD,
    ) -> Bank:
        """Open (or create) a bank, apply schema migrations, and load or rebuild its indexes.

        Args:
            path: the DuckDB file (default `default_bank_path()`); its parent directory is created.
            encoder: the text encoder, or a model name/path for one (default: the model the bank's text
                embeddings were made with, else the packaged MiniLM). Loaded lazily on first use.
            approx_threshold: above this many vectors re-indexing builds HNSW instead of an exact index.

        Raises:
            BankError: the file is open read-write in another process, is not a DuckDB file, or the text
                encoder differs from the one the bank's embeddings were made with.
        """
        path = Path(path).expanduser() if path is not None else default_bank_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(path), config=CONNECTION_CONFIG)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise BankError(f"cannot open the bank {path}: {err}") from None
            raise BankError(
                f"cannot open the bank {path}: {err}. DuckDB allows one read-write process per file: stop the "
                "other loragen process (or the service) using it, or talk to the service instead."
            ) from None
        except duckdb.Error as err:
            raise BankError(f"cannot open the bank {path}: {err}") from None
        if isinstance(encoder, (str, os.PathLike)):
            encoder = TextEncoder(encoder)
        bank = cls(path, con, encoder, approx_threshold)
        try:
            migrate(bank._cur())
            bank._check_encoder()
            bank._load_entries()
            for space in SPACES:
                bank._load_index(space)
            bank._remove_stale_files()
        except BaseException:
            bank.close()
            raise
        return bank

    def close(self) -> None:
        """Close the DuckDB connection (a checkpoint folds the write-ahead log into the file)."""
        if self._closed:
            return
        self._closed = True
        for cur in self._cursors:
            try:
                cur.close()
            except duckdb.Error:
                pass
        self._con.close()

    def __enter__(self) -> Bank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB connection (a cursor of the bank's database; one per thread)."""
        if self._closed:
            raise BankError(f"the bank {self.path} is closed")
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
            with self._state_lock:
                self._cursors.append(cur)
        return cur

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Serialised write transaction on this thread's connection; rolled back on any error."""
        with self._write_lock:
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    # ---- settings -------------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._cur().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _check_encoder(self) -> None:
        stored = self._meta("text_model")
        if stored and self._encoder is not None and self._encoder.name != stored:
            raise BankError(
                f"the bank {self.path} holds text embeddings made with {stored!r}, but the encoder given is "
                f"{self._encoder.name!r}; open it with that model (or rebuild the bank with the new one)."
            )

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder (loaded on first use)."""
        if self._encoder is None:
            stored = self._meta("text_model")
            self._encoder = default_encoder(stored) if stored else default_encoder()
        return self._encoder

    # ---- tasks ----------------------------------------------------------------------------------------
    def add_task(self, task: TaskRecord) -> None:
        """Insert a task, or replace the task of the same name."""
        self.add_tasks([task])

    def add_tasks(self, tasks: Iterable[TaskRecord]) -> int:
        """Insert or replace several tasks in one transaction; returns how many."""
        rows = [
            [
                t.name,
                t.description,
                _js(list(t.labels)),
                _js(list(t.paraphrases)),
                _js(list(t.heldout_paraphrases)),
                t.family,
                t.split,
                _js(t.data_ref),
            ]
            for t in tasks
        ]
        for row in rows:
            if not row[0] or not row[1]:
                raise ValueError(f"a task needs a name and a description, got name={row[0]!r}")
        with self._transaction() as cur:
            if rows:
                cur.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def get_task(self, name: str) -> TaskRecord:
        """The task called `name`.

        Raises:
            NotFoundError: no such task.
        """
        row = self._cur().execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFoundError(f"no task named {name!r} in the bank {self.path}; list them with bank.tasks().")
        return _task_from_row(row)

    def tasks(self, split: str | None = None) -> list[TaskRecord]:
        """All tasks (of one split if given), sorted by name."""
        sql = f"SELECT {_TASK_COLUMNS} FROM tasks" + (" WHERE split = ?" if split else "") + " ORDER BY name"
        return [_task_from_row(r) for r in self._cur().execute(sql, [split] if split else []).fetchall()]

    # ---- adapters: write ------------------------------------------------------------------------------
    def add(
        self,
        adapter: LoraAdapter,
        task: str | None = None,
        description: str | None = None,
        kind: AdapterKind = "final",
        source: str = "",
        metrics: dict[str, Any] | None = None,
        keep_original: bool = False,
        on_duplicate: OnDuplicate = "error",
    ) -> str:
        """Store an adapter (canonical form) with its tensors and embeddings, all in one transaction.

        Args:
            adapter: the adapter; its base model must be the packaged MiniLM or a local transformers directory,
                and every module must fit that model's layers.
            task: name of the task it solves (need not be in the bank's task table).
            description: what it does; default `adapter.metadata["description"]`, else the task's description.
                The text embedding is the mean of the description and the task's paraphrases.
            kind: "final", "checkpoint", "generated" or "uploaded".
            source: provenance (a path, a run id, a generator name).
            metrics: JSON-serialisable numbers (accuracy, loss, ...).
            keep_original: also keep the factors as given (`get(id, original=True)`).
            on_duplicate: "error" raises DuplicateAdapterError when the same canonical adapter is already stored;
                "skip" returns the existing id and changes nothing.

        Returns:
            The new adapter's id (or the existing id for a skipped duplicate).

        Raises:
            UnknownBaseModelError, AdapterShapeError, NonFiniteError: the adapter is not valid; nothing is written.
            DuplicateAdapterError: see `on_duplicate`.
        """
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if on_duplicate not in ("error", "skip"):
            raise ValueError(f"on_duplicate must be 'error' or 'skip', got {on_duplicate!r}")
        adapter.check_finite()
        base_model = self._check_base_model(adapter)
        canon = replace(canonicalize(adapter.to("cpu")), base_model=base_model)
        sha = canon.sha256()
        existing = self._id_by_sha(sha)
        if existing is not None:
            return self._duplicate(existing, on_duplicate)
        task_record = self._task_or_none(task)
        description = description or adapter.metadata.get("description") or (
            task_record.description if task_record else None
        )
        metadata = {k: v for k, v in canon.metadata.items() if k not in ("id", "task", "description")}
        if keep_original:
            metadata["original"] = {"r": adapter.r, "lora_alpha": adapter.lora_alpha, "use_rslora": adapter.use_rslora}
        adapter_id = uuid.uuid4().hex[:16]
        row = [
            adapter_id, base_model, canon.r, canon.lora_alpha, _js(sorted(canon.target_modules)), canon.fan_in_fan_out,
            canon.use_rslora, keep_original, len(canon.modules), task, description, kind, source, _js(metrics or {}),
            _js(metadata), sha, adapter.sha256() if keep_original else None,
        ]
        tensors = _tensor_rows(adapter_id, canon, "canonical")  # canonical first: get() relies on the order
        if keep_original:
            tensors += _tensor_rows(adapter_id, adapter.to("cpu"), "original")
        if len(tensors) > BLOBS_PER_ADAPTER:
            raise BankError(f"an adapter may hold at most {BLOBS_PER_ADAPTER} tensors, this one has {len(tensors)}")
        vectors = {"weight": weight_embedding(canon), "text": self._text_vector(description, task_record)}
        try:
            seq = self._write_adapter(row, tensors, vectors)
        except _Duplicate as dup:
            return self._duplicate(dup.existing, on_duplicate)
        self._publish(seq, _Entry(adapter_id, task, description), vectors)
        logger.debug("bank: added adapter %s (task %s, seq %d)", adapter_id, task, seq)
        return adapter_id

    def _write_adapter(self, row: list, tensors: list[list], vectors: dict[str, np.ndarray | None]) -> int:
        """Insert an adapter's row, tensors and embeddings in one transaction; returns its seq.

        Raises:
            _Duplicate: another thread stored the same adapter since `add` checked.
        """
        adapter_id, sha = row[0], row[15]
        with self._transaction() as cur:
            again = cur.execute("SELECT id FROM adapters WHERE sha256 = ?", [sha]).fetchone()
            if again is not None:
                raise _Duplicate(again[0])
            seq = cur.execute("SELECT nextval('adapter_seq')").fetchone()[0]
            # Column order of `adapters` (bank/schema.py): id, seq, base_model ... canonical (always true) ...
            cur.execute(
                "INSERT INTO adapters VALUES (?, ?, ?, ?, ?, ?, ?, ?, true, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?)",
                [row[0], seq, *row[1:]],
            )
            cur.executemany(
                "INSERT INTO tensors (blob_id, adapter_id, variant, module, factor, dtype, shape, sha256, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[seq * BLOBS_PER_ADAPTER + k, *t] for k, t in enumerate(tensors)],
            )
            self._insert_embedding(cur, adapter_id, "weight", WEIGHT_MODEL, vectors["weight"])
            if vectors["text"] is not None:
                self._insert_embedding(cur, adapter_id, "text", self.encoder.name, vectors["text"])
                cur.execute("INSERT OR IGNORE INTO meta VALUES ('text_model', ?)", [self.encoder.name])
        return int(seq)

    def _duplicate(self, existing: str, on_duplicate: OnDuplicate) -> str:
        if on_duplicate == "skip":
            return existing
        raise DuplicateAdapterError(
            f"the bank {self.path} already holds this adapter as {existing!r} (same canonical checksum); "
            "use that id, or pass on_duplicate='skip' (CLI: --skip-duplicates) to get it back without an error."
        )

    def _insert_embedding(self, cur, adapter_id: str, space: str, model: str, vec: np.ndarray) -> None:
        vec = np.ascontiguousarray(vec, dtype=np.float32)
        cur.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?)", [adapter_id, space, model, len(vec),
                                                                       vec.tobytes()])

    def _publish(self, seq: int, entry: _Entry, vectors: dict[str, np.ndarray | None]) -> None:
        """Make a committed adapter searchable: add it to the catalog and to each space's delta."""
        with self._state_lock:
            for space, vec in vectors.items():
                if vec is not None:
                    self._indexes[space] = self._indexes[space].with_added(vec[None, :], np.array([seq]))
            self._entries[seq] = entry

    def _check_base_model(self, adapter: LoraAdapter) -> str:
        """The adapter's base-model id, after checking every module fits that model (on the meta device)."""
        base_id = canonical_base_model_id(adapter.base_model or None)
        model = self._base_models.get(base_id)
        if model is None:
            from transformers import AutoConfig

            from loragen.bank.base_model import _model_class

            path = resolve_base_model(adapter.base_model or None)
            config = AutoConfig.from_pretrained(str(path))
            with torch.device("meta"):  # shapes only: no weights are allocated or read
                model = _model_class(path).from_config(config)
            self._base_models[base_id] = model
        target_weights(model, adapter)
        return base_id

    def _task_or_none(self, task: str | None) -> TaskRecord | None:
        if task is None:
            return None
        try:
            return self.get_task(task)
        except NotFoundError:
            return None

    def _text_vector(self, description: str | None, task: TaskRecord | None) -> np.ndarray | None:
        texts = [description] if description else []
        if task is not None:
            texts += list(task.paraphrases)
        if not texts:
            return None
        vec = self.encoder.encode(texts).mean(axis=0)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def _id_by_sha(self, sha: str) -> str | None:
        row = self._cur().execute("SELECT id FROM adapters WHERE sha256 = ?", [sha]).fetchone()
        return row[0] if row else None

    def delete(self, adapter_id: str) -> None:
        """Remove an adapter, its tensors and embeddings (one transaction).

        Raises:
            NotFoundError: no such adapter.
        """
        with self._transaction() as cur:
            row = cur.execute("SELECT seq FROM adapters WHERE id = ?", [adapter_id]).fetchone()
            if row is None:
                raise NotFoundError(f"no adapter {adapter_id!r} in the bank {self.path}")
            for table in ("tensors", "embeddings"):
                cur.execute(f"DELETE FROM {table} WHERE adapter_id = ?", [adapter_id])
            cur.execute("DELETE FROM adapters WHERE id = ?", [adapter_id])
        with self._state_lock:
            self._entries.pop(int(row[0]), None)

    def import_peft(
        self,
        path: str | os.PathLike,
        description: str | None = None,
        task: str | None = None,
        kind: AdapterKind = "uploaded",
        keep_original: bool = False,
        on_duplicate: OnDuplicate = "error",
    ) -> str:
        """Import a PEFT LoRA directory (safetensors only); see `add` for the arguments and errors.

        Raises:
            AdapterFormatError: not a PEFT LoRA directory, pickled weights, unreadable safetensors.
        """
        adapter = load_peft(path)
        return self.add(
            adapter,
            task=task or adapter.metadata.get("task"),
            description=description,
            kind=kind,
            source=str(Path(path).resolve()),
            metrics=adapter.metadata.get("metrics"),
            keep_original=keep_original,
            on_duplicate=on_duplicate,
        )

    def export_peft(self, adapter_id: str, path: str | os.PathLike, original: bool = False) -> Path:
        """Write an adapter as a PEFT directory (canonical form, or the kept original); returns the directory."""
        return save_peft(self.get(adapter_id, original=original), path)

    # ---- adapters: read -------------------------------------------------------------------------------
    def record(self, adapter_id: str) -> AdapterRecord:
        """The stored metadata of one adapter.

        Raises:
            NotFoundError: no such adapter.
        """
        return self._record_layout(adapter_id)[0]

    def _record_layout(self, adapter_id: str) -> tuple[AdapterRecord, dict[str, Any]]:
        """The record plus what `get` needs to find and rebuild the tensors (seq, n_modules, ...)."""
        row = self._cur().execute(
            f"SELECT {_RECORD_COLUMNS}, {', '.join(_LAYOUT_COLUMNS)} FROM adapters WHERE id = ?", [adapter_id]
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no adapter {adapter_id!r} in the bank {self.path}; list them with `loragen bank stats` or "
                "bank.adapters()."
            )
        k = len(_LAYOUT_COLUMNS)
        return _record_from_row(row[:-k]), dict(zip(_LAYOUT_COLUMNS, row[-k:]))

    def adapters(self, task: str | None = None, kind: str | None = None) -> list[AdapterRecord]:
        """Metadata of all adapters (optionally of one task and/or kind), oldest first."""
        where, params = [], []
        for column, value in (("task", task), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_RECORD_COLUMNS} FROM adapters" + (" WHERE " + " AND ".join(where) if where else "")
        return [_record_from_row(r) for r in self._cur().execute(sql + " ORDER BY seq", params).fetchall()]

    def get(self, adapter_id: str, original: bool = False) -> LoraAdapter:
        """The adapter with its tensors, checksums verified; metadata holds "id", "task" and "description".

        Args:
            adapter_id: the id `add` returned.
            original: return the factors as given to `add` (only if it was called with keep_original=True).

        Raises:
            NotFoundError: no such adapter (or no original kept).
            ChecksumError: stored tensors do not match their checksums; the message names the adapter.
        """
        rec, layout = self._record_layout(adapter_id)
        if original and not layout["has_original"]:
            raise NotFoundError(f"adapter {adapter_id!r} was stored without its original factors (keep_original)")
        n = 2 * layout["n_modules"]  # blobs per variant: A and B of every module
        first = layout["seq"] * BLOBS_PER_ADAPTER + (n if original else 0)
        factors = self._read_factors(adapter_id, range(first, first + n))
        adapter = self._adapter_from(rec, factors, original, layout["fan_in_fan_out"])
        expected = rec.sha256 if not original else self._original_sha(adapter_id)
        if adapter.sha256() != expected:
            raise ChecksumError(
                f"adapter {adapter_id!r}: its tensors do not match the recorded checksum {expected[:12]}…; the bank "
                f"file {self.path} is damaged. Delete the adapter and import it again."
            )
        return adapter

    def _read_factors(self, adapter_id: str, blob_ids: range) -> dict[str, dict[str, torch.Tensor]]:
        """{"A": {module: tensor}, "B": {...}} from the given BLOBs, each checked against its sha256."""
        factors: dict[str, dict[str, torch.Tensor]] = {"A": {}, "B": {}}
        cur = self._cur()
        for blob_id in blob_ids:
            # One primary-key equality lookup per BLOB: stays flat as the bank grows (see bank/schema.py).
            row = cur.execute(
                "SELECT module, factor, dtype, shape, sha256, data FROM tensors WHERE blob_id = ?", [blob_id]
            ).fetchone()
            if row is None:
                raise ChecksumError(f"adapter {adapter_id!r}: tensors are missing from the bank file {self.path}")
            module, factor, dtype, shape, sha, data = row
            if hashlib.sha256(data).hexdigest() != sha:
                raise ChecksumError(
                    f"adapter {adapter_id!r}: tensor {module}.lora_{factor} does not match its sha256; the bank "
                    f"file {self.path} is damaged. Delete the adapter and import it again."
                )
            tensor = torch.frombuffer(bytearray(data), dtype=resolve_dtype(dtype)) if data else torch.zeros(0)
            factors[factor][module] = tensor.reshape(json.loads(shape))
        return factors

    def _adapter_from(self, rec: AdapterRecord, factors: dict, original: bool, fan_in_fan_out: bool) -> LoraAdapter:
        meta = dict(rec.metadata)
        orig = meta.get("original", {}) if original else {}
        if original:
            meta.pop("canonical", None)
        return LoraAdapter(
            base_model=rec.base_model,
            r=int(orig.get("r", rec.r)),
            lora_alpha=float(orig.get("lora_alpha", rec.lora_alpha)),
            lora_A=factors["A"],
            lora_B=factors["B"],
            target_modules=list(rec.target_modules),
            fan_in_fan_out=fan_in_fan_out,
            use_rslora=bool(orig.get("use_rslora", False)),
            metadata={**meta, "id": rec.id, "task": rec.task, "description": rec.description},
        )

    def _original_sha(self, adapter_id: str) -> str:
        return self._cur().execute("SELECT original_sha256 FROM adapters WHERE id = ?", [adapter_id]).fetchone()[0]

    # ---- search ---------------------------------------------------------------------------------------
    def search_text(self, query: str, k: int = 5, exclude_tasks: Collection[str] = ()) -> list[SearchHit]:
        """Adapters whose description is closest to `query` (cosine of sentence embeddings), best first.

        Args:
            query: a plain-language task description.
            k: how many hits.
            exclude_tasks: tasks whose adapters are skipped (e.g. the held-out task being evaluated).
        """
        if not query or not query.strip():
            raise ValueError("search_text needs a non-empty query")
        return self._search("text", self.encoder.encode([query])[0], k, exclude_tasks)

    def search_adapter(self, adapter: LoraAdapter, k: int = 5, exclude_tasks: Collection[str] = ()) -> list[SearchHit]:
        """Adapters whose ΔW is closest to `adapter`'s (cosine of `weight_embedding`s), best first."""
        return self._search("weight", weight_embedding(adapter), k, exclude_tasks)

    def _search(self, space: str, query: np.ndarray, k: int, exclude_tasks: Collection[str]) -> list[SearchHit]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with self._state_lock:
            index, entries = self._indexes[space], self._entries
        excluded = set(exclude_tasks)
        fetch = k
        while True:
            # Hits of deleted adapters (still in the main index until the next re-index) and of excluded tasks
            # are dropped, so fetch more until k remain or the index has nothing more to give.
            scores, seqs = index.search(query, fetch)
            hits = []
            for score, seq in zip(scores.tolist(), seqs.tolist()):
                entry = entries.get(seq)
                if entry is not None and entry.task not in excluded:
                    hits.append(SearchHit(id=entry.id, score=float(score), task=entry.task,
                                          description=entry.description))
            if len(hits) >= k or len(seqs) < fetch:
                return hits[:k]
            fetch *= 4

    # ---- indexes --------------------------------------------------------------------------------------
    def _load_entries(self) -> None:
        rows = self._cur().execute("SELECT seq, id, task, description FROM adapters").fetchall()
        self._entries = {int(seq): _Entry(i, t, d) for seq, i, t, d in rows}

    def _vectors(self, space: str, min_seq: int = 0, max_seq: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) vectors and (n,) seqs of `space` with min_seq < seq <= max_seq, from DuckDB."""
        sql = (
            "SELECT a.seq, e.vector FROM embeddings e JOIN adapters a ON a.id = e.adapter_id "
            "WHERE e.space = ? AND a.seq > ?" + (" AND a.seq <= ?" if max_seq is not None else "") + " ORDER BY a.seq"
        )
        params = [space, min_seq] + ([max_seq] if max_seq is not None else [])
        rows = self._cur().execute(sql, params).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        seqs = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return vecs, seqs

    def _current_version(self, space: str) -> dict[str, Any] | None:
        row = self._cur().execute(
            "SELECT version, file, method, params, ntotal, max_seq, sha256, duration_s, created_at "
            "FROM index_versions WHERE space = ? ORDER BY version DESC LIMIT 1",
            [space],
        ).fetchone()
        if row is None:
            return None
        keys = ("version", "file", "method", "params", "ntotal", "max_seq", "sha256", "duration_s", "created_at")
        info = dict(zip(keys, row))
        info["params"] = json.loads(info["params"])
        info["created_at"] = str(info["created_at"])
        return info

    def _load_index(self, space: str) -> None:
        """Load the recorded index of `space` (checksum verified) plus its delta; rebuild it if damaged."""
        info = self._current_version(space)
        if info is None:
            vecs, seqs = self._vectors(space)
            index = VectorIndex(dim=vecs.shape[1]) if len(seqs) else VectorIndex()
            self._indexes[space] = index.with_added(vecs, seqs) if len(seqs) else index
            return
        try:
            main = read_index(self.index_dir / info["file"], info["sha256"])
        except IndexCorruptError as err:
            logger.warning("bank: %s; rebuilding the %s index from DuckDB", err, space)
            self._reindex_space(space)
            return
        vecs, seqs = self._vectors(space, min_seq=info["max_seq"])
        index = VectorIndex(dim=int(main.d)).with_main(to_gpu_if_available(main), info["max_seq"], info, int(main.d))
        self._indexes[space] = index.with_added(vecs, seqs) if len(seqs) else index

    def reindex(self) -> dict[str, dict[str, Any]]:
        """Rebuild every space's FAISS index from DuckDB and swap it in atomically.

        For each space: build a new index of all committed vectors (exact or HNSW, chosen by size), write it to a
        temporary file, fsync, rename it to a new versioned file, then record the version (file, method, size,
        sha256) in DuckDB in one transaction, and only then swap it in. Searches keep using the old snapshot
        until the swap; adapters added meanwhile stay in the delta. A crash at any point leaves the previously
        recorded index in force (a file written but not recorded is removed on the next open).

        Returns:
            Per space: the recorded version info (version, method, ntotal, duration_s, ...).
        """
        with self._reindex_lock:
            return {space: self._reindex_space(space) for space in SPACES}

    def _reindex_space(self, space: str) -> dict[str, Any]:
        start = time.perf_counter()
        max_seq = int(self._cur().execute("SELECT coalesce(max(seq), 0) FROM adapters").fetchone()[0])
        vecs, seqs = self._vectors(space, max_seq=max_seq)
        dim = vecs.shape[1] if len(seqs) else self._indexes[space].dim
        if not dim:  # nothing was ever embedded in this space: no index to build
            return {"version": None, "method": None, "ntotal": 0, "max_seq": max_seq, "duration_s": 0.0}
        main, built = build_index(vecs.reshape(len(seqs), dim), seqs, threshold=self.approx_threshold)
        prev = self._current_version(space)
        version = (prev["version"] if prev else 0) + 1
        file = f"{space}-v{version}.faiss"
        sha = write_index(main, self.index_dir / file)
        duration = time.perf_counter() - start
        info = {"version": version, "file": file, "method": built["method"], "params": built["params"],
                "ntotal": int(main.ntotal), "max_seq": max_seq, "sha256": sha, "duration_s": duration}
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO index_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [space, version, file, built["method"], _js(built["params"]), info["ntotal"], max_seq, sha, duration],
            )
        with self._state_lock:
            self._indexes[space] = self._indexes[space].with_main(to_gpu_if_available(main), max_seq, info, dim)
        self._remove_stale_files()
        logger.info("bank: %s index v%d (%s) over %d vectors built in %.2f s", space, version, built["method"],
                    info["ntotal"], duration)
        return info

    def _remove_stale_files(self) -> None:
        """Delete index files no recorded current version points to (older versions, crashed re-indexes)."""
        if not self.index_dir.is_dir():
            return
        keep = {info["file"] for space in SPACES if (info := self._current_version(space))}
        for file in self.index_dir.iterdir():
            if file.name not in keep and (file.suffix in (".faiss", ".tmp")):
                try:
                    file.unlink()
                except FileNotFoundError:
                    pass

    # ---- summary --------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts, sizes and index state, JSON-serialisable."""
        cur = self._cur()
        n_adapters, n_tasks = (cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("adapters", "tasks"))
        tensor_bytes = cur.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM tensors").fetchone()[0]
        by_kind = dict(cur.execute("SELECT kind, count(*) FROM adapters GROUP BY kind ORDER BY kind").fetchall())
        with self._state_lock:
            indexes = dict(self._indexes)
        return {
            "path": str(self.path),
            "schema_version": int(cur.execute("SELECT max(version) FROM schema_version").fetchone()[0]),
            "adapters": int(n_adapters),
            "adapters_by_kind": {k: int(v) for k, v in by_kind.items()},
            "tasks": int(n_tasks),
            "tensor_bytes": int(tensor_bytes),
            "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
            "text_model": self._meta("text_model"),
            "indexes": {
                space: {
                    "version": idx.info.get("version"),
                    "method": idx.info.get("method"),
                    "params": idx.info.get("params", {}),
                    "indexed": idx.main_size,
                    "delta": idx.delta_size,
                    "dim": idx.dim,
                }
                for space, idx in indexes.items()
            },
        }


class _Duplicate(Exception):
    def __init__(self, existing: str):
        self.existing = existing


def _tensor_rows(adapter_id: str, adapter: LoraAdapter, variant: str) -> list[list[Any]]:
    rows = []
    for module, a, b in adapter.items():
        for factor, t in (("A", a), ("B", b)):
            data = _tensor_bytes(t)
            rows.append([adapter_id, variant, module, factor, dtype_name(t.dtype), _js(list(t.shape)),
                         hashlib.sha256(data).hexdigest(), data])
    return rows


_LAYOUT_COLUMNS = ("seq", "n_modules", "fan_in_fan_out", "has_original")
_TASK_COLUMNS = "name, description, labels, paraphrases, heldout_paraphrases, family, split, data_ref"
_RECORD_COLUMNS = (
    "id, base_model, r, lora_alpha, target_modules, sha256, task, description, kind, source, canonical, "
    "created_at, metrics, metadata"
)


def _task_from_row(row: tuple) -> TaskRecord:
    name, description, labels, paraphrases, heldout, family, split, data_ref = row
    return TaskRecord(
        name=name,
        description=description,
        labels=tuple(json.loads(labels)),
        paraphrases=tuple(json.loads(paraphrases)),
        family=family,
        split=split,
        data_ref=json.loads(data_ref),
        heldout_paraphrases=tuple(json.loads(heldout)),
    )


def _record_from_row(row: tuple) -> AdapterRecord:
    id_, base_model, r, alpha, targets, sha, task, description, kind, source, canonical, created, metrics, meta = row
    return AdapterRecord(
        id=id_,
        base_model=base_model,
        r=int(r),
        lora_alpha=float(alpha),
        target_modules=tuple(json.loads(targets)),
        sha256=sha,
        task=task,
        description=description,
        kind=kind,
        source=source,
        canonical=bool(canonical),
        created_at=str(created),
        metrics=json.loads(metrics),
        metadata=json.loads(meta),
    )
