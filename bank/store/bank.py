"""`Bank`: the LoRA bank. Adapters, tasks and embeddings in one DuckDB file; FAISS indexes beside it.

Usage::

    with Bank.open("bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="lang/pl-vs-cs", description="...", labels=("pl", "cs")))
        adapter_id = bank.add(adapter, task="lang/pl-vs-cs")
        hits = bank.search_text("tell Polish from Czech", k=5, kind="final")
        same = bank.get(adapter_id)                    # canonical form, checksums verified
        bank.reindex()                                  # rebuild the FAISS indexes atomically

Guarantees:
- Every adapter is written in one transaction (row, tensors, embeddings): a crash or an error leaves either the
  whole adapter or nothing. Searches see an adapter only after its transaction committed.
- Adapters are stored in canonical form (`bank.lora.canonicalize`); `keep_original=True` keeps the factors as given.
- Each tensor BLOB carries a sha256 over its dtype, shape and bytes, checked on every read before decoding, and the
  rebuilt adapter must match the recorded `LoraAdapter.sha256`; a mismatch, or an adapter row whose JSON no longer
  parses, raises `ChecksumError` naming the adapter.
- Duplicates: an adapter whose canonical checksum is already in the bank raises `DuplicateAdapterError` naming the
  existing id (`on_duplicate="error"`, the default), or returns the existing id unchanged (`on_duplicate="skip"`).
- Threads: one `Bank` may be shared by threads of one process (the service). Writes are serialised; searches read
  immutable index snapshots and never wait for a write or a re-index. DuckDB lets only one process open the file
  read-write: a second process gets a `BankError` saying so. Open one `Bank` per file per process and share it
  (two `Bank` objects on one file would each keep their own index snapshots).

The work is done by the modules beside this one: `connection` (DuckDB), `tasks`, `adapters`, `blobs` (tensor
codec and checksums), `indexes` (FAISS lifecycle) and `schema` (migrations).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from loragen.bank import paths
from loragen.bank.embed import TextEncoder, default_encoder, weight_embedding
from loragen.bank.errors import BankError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import AdapterKind, AdapterRecord, SearchHit, TaskRecord
from loragen.bank.store.adapters import KINDS, AdapterTable, OnDuplicate
from loragen.bank.store.connection import Database
from loragen.bank.store.indexes import Indexes
from loragen.bank.store.schema import migrate
from loragen.bank.store.tasks import StoredExample, TaskTable
from loragen.bank.store.vector_index import APPROX_THRESHOLD


class Bank:
    """The LoRA bank. Create it with `Bank.open`; see the module docstring for its guarantees."""

    def __init__(self, path: Path, db: Database, encoder: TextEncoder | None, threshold: int):
        self.path = path
        self.index_dir = paths.index_dir(path)
        self._db = db
        self._encoder = encoder
        self._tasks = TaskTable(db)
        self._indexes = Indexes(db, self.index_dir, threshold)
        self._adapters = AdapterTable(db, self._tasks, self._indexes, lambda: self.encoder)

    # ---- opening and closing ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        encoder: TextEncoder | str | None = None,
        approx_threshold: int = APPROX_THRESHOLD,
        memory_limit: str | None = None,
    ) -> Bank:
        """Open (or create) a bank, apply schema migrations, and load or rebuild its indexes.

        Args:
            path: the DuckDB file (default `loragen.bank.paths.bank_path()`); its parent directory is created.
            encoder: the text encoder, or a model name/path for one (default: the model the bank's text
                embeddings were made with, else the packaged MiniLM). Loaded lazily on first use.
            approx_threshold: above this many vectors re-indexing builds HNSW instead of an exact index.
            memory_limit: DuckDB's memory limit for this connection, e.g. "1GB" (default
                `schema.DEFAULT_MEMORY_LIMIT`, 256MB, rather than DuckDB's 80% of RAM).

        Raises:
            BankError: the file is open read-write in another process, is not a DuckDB file, or the text
                encoder differs from the one the bank's embeddings were made with.
        """
        path = Path(path).expanduser() if path is not None else paths.bank_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = Database.connect(path, memory_limit)
        if isinstance(encoder, (str, os.PathLike)):
            encoder = TextEncoder(encoder)
        bank = cls(path, db, encoder, approx_threshold)
        try:
            migrate(db.cursor())
            bank._check_encoder()
            bank._indexes.load()
        except BaseException:
            bank.close()
            raise
        return bank

    def close(self) -> None:
        """Close the DuckDB connection (a checkpoint folds the write-ahead log into the file)."""
        self._db.close()

    def __enter__(self) -> Bank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB cursor (for tests and benchmarks that inspect the file)."""
        return self._db.cursor()

    # ---- settings -----------------------------------------------------------------------------------------
    @property
    def approx_threshold(self) -> int:
        """Above this many vectors re-indexing builds HNSW instead of an exact index."""
        return self._indexes.approx_threshold

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder (loaded on first use)."""
        if self._encoder is None:
            stored = self._db.meta("text_model")
            self._encoder = default_encoder(stored) if stored else default_encoder()
        return self._encoder

    def _check_encoder(self) -> None:
        stored = self._db.meta("text_model")
        if stored and self._encoder is not None and self._encoder.name != stored:
            raise BankError(
                f"the bank {self.path} holds text embeddings made with {stored!r}, but the encoder given is "
                f"{self._encoder.name!r}; open it with that model (or rebuild the bank with the new one)."
            )

    # ---- tasks --------------------------------------------------------------------------------------------
    def add_task(self, task: TaskRecord) -> None:
        """Insert a task, or replace the task of the same name."""
        self._tasks.add([task])

    def add_tasks(self, tasks: Iterable[TaskRecord]) -> int:
        """Insert or replace several tasks in one transaction; returns how many."""
        return self._tasks.add(tasks)

    def get_task(self, name: str) -> TaskRecord:
        """The task called `name`.

        Raises:
            NotFoundError: no such task.
        """
        return self._tasks.get(name)

    def tasks(self, split: str | None = None) -> list[TaskRecord]:
        """All tasks (of one split if given), sorted by name."""
        return self._tasks.records(split)

    def set_task_data(self, name: str, train: Sequence[StoredExample], val: Sequence[StoredExample] = (),
                      test: Sequence[StoredExample] = ()) -> int:
        """Store a task's own examples (replacing earlier ones): (text, label index) pairs for classification or
        (input, output) pairs for generation. Returns how many were stored.

        Raises:
            NotFoundError: the task is not in the bank (add it first).
            ValueError: a malformed example (nothing is written).
        """
        return self._tasks.set_data(name, {"train": list(train), "val": list(val), "test": list(test)})

    def put_task(self, task: TaskRecord, train: Sequence[StoredExample], val: Sequence[StoredExample] = (),
                 test: Sequence[StoredExample] = ()) -> int:
        """Insert or replace a task together with its examples (replacing earlier ones), in one transaction.

        Returns:
            How many examples were stored.

        Raises:
            ValueError: a task without name or description, or a malformed example (nothing is written).
        """
        return self._tasks.put(task, {"train": list(train), "val": list(val), "test": list(test)})

    def task_example_counts(self) -> dict[str, dict[str, int]]:
        """Stored examples per task and split ("train", "val", "test"); tasks without stored examples are absent."""
        return self._tasks.counts()

    def task_data(self, name: str) -> dict[str, list[StoredExample]] | None:
        """A task's stored examples by split ("train", "val", "test"), or None when it has none stored."""
        return self._tasks.data(name)

    # ---- adapters: write ----------------------------------------------------------------------------------
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
        paraphrases: Sequence[str] = (),
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
            paraphrases: other wordings of this adapter's description (kept in its metadata; the text embedding
                averages them with the description and the task's paraphrases).

        Returns:
            The new adapter's id (or the existing id for a skipped duplicate).

        Raises:
            UnknownBaseModelError, AdapterShapeError, NonFiniteError: the adapter is not valid; nothing is written.
            DuplicateAdapterError: see `on_duplicate`.
        """
        return self._adapters.add(adapter, task, description, kind, source, metrics, keep_original, on_duplicate,
                                  paraphrases)

    def delete(self, adapter_id: str) -> None:
        """Remove an adapter, its tensors and embeddings (one transaction).

        Raises:
            NotFoundError: no such adapter.
        """
        self._adapters.delete(adapter_id)

    def import_peft(
        self,
        path: str | os.PathLike,
        description: str | None = None,
        task: str | None = None,
        kind: AdapterKind = "uploaded",
        keep_original: bool = False,
        on_duplicate: OnDuplicate = "error",
        base_model: str | None = None,
        paraphrases: Sequence[str] = (),
    ) -> str:
        """Import a PEFT LoRA directory (safetensors only); see `add` for the other arguments and errors.

        Args:
            base_model: the base model the adapter is for (default: its config's `base_model_name_or_path`; a
                relative path there is taken relative to the adapter directory, not the working directory).

        Raises:
            AdapterFormatError: not a PEFT LoRA directory, pickled weights, unreadable safetensors.
            UnknownBaseModelError: the base model cannot be found (see `base_model`).
        """
        return self._adapters.import_peft(path, description, task, kind, keep_original, on_duplicate, base_model,
                                          paraphrases)

    def export_peft(self, adapter_id: str, path: str | os.PathLike, original: bool = False) -> Path:
        """Write an adapter as a PEFT directory (canonical form, or the kept original); returns the directory."""
        return self._adapters.export_peft(adapter_id, path, original)

    # ---- adapters: read -----------------------------------------------------------------------------------
    def record(self, adapter_id: str) -> AdapterRecord:
        """The stored metadata of one adapter.

        Raises:
            NotFoundError: no such adapter.
            ChecksumError: its stored metadata no longer parses (the bank file is damaged).
        """
        return self._adapters.record(adapter_id)

    def adapters(self, task: str | None = None, kind: str | None = None) -> list[AdapterRecord]:
        """Metadata of all adapters (optionally of one task and/or kind), oldest first.

        Raises:
            ChecksumError: an adapter's stored metadata no longer parses (the message names it).
        """
        return self._adapters.records(task, kind)

    def get(self, adapter_id: str, original: bool = False) -> LoraAdapter:
        """The adapter with its tensors, checksums verified; metadata holds "id", "task" and "description".

        Args:
            adapter_id: the id `add` returned.
            original: return the factors as given to `add` (only if it was called with keep_original=True).

        Raises:
            NotFoundError: no such adapter (or no original kept).
            ChecksumError: stored tensors (dtype, shape or bytes) or metadata do not match what was written; the
                message names the adapter.
        """
        return self._adapters.get(adapter_id, original)

    # ---- search -------------------------------------------------------------------------------------------
    def search_text(
        self, query: str, k: int = 5, exclude_tasks: Collection[str] = (), kind: AdapterKind | None = None
    ) -> list[SearchHit]:
        """Adapters whose description is closest to `query` (cosine of sentence embeddings), best first.

        Args:
            query: a plain-language task description.
            k: how many hits (fewer only when the bank has fewer eligible adapters).
            exclude_tasks: tasks whose adapters are skipped (e.g. the held-out task being evaluated).
            kind: only adapters of this kind ("final", ...); the search widens until `k` of them are found.
        """
        if not query or not query.strip():
            raise ValueError("search_text needs a non-empty query")
        _check_kind(kind)
        return self._indexes.search("text", self.encoder.encode([query])[0], k, exclude_tasks, kind)

    def search_adapter(
        self, adapter: LoraAdapter, k: int = 5, exclude_tasks: Collection[str] = (), kind: AdapterKind | None = None
    ) -> list[SearchHit]:
        """Adapters whose ΔW is closest to `adapter`'s (cosine of `weight_embedding`s), best first.

        Args: as for `search_text`.
        """
        _check_kind(kind)
        return self._indexes.search("weight", weight_embedding(adapter), k, exclude_tasks, kind)

    # ---- indexes ------------------------------------------------------------------------------------------
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
        return self._indexes.reindex()

    def stats(self) -> dict[str, Any]:
        """Counts, sizes and index state, JSON-serialisable."""
        cur = self._db.cursor()
        n_adapters, n_tasks = (cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("adapters", "tasks"))
        tensor_bytes = cur.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM tensors").fetchone()[0]
        by_kind = dict(cur.execute("SELECT kind, count(*) FROM adapters GROUP BY kind ORDER BY kind").fetchall())
        return {
            "path": str(self.path),
            "schema_version": int(cur.execute("SELECT max(version) FROM schema_version").fetchone()[0]),
            "adapters": int(n_adapters),
            "adapters_by_kind": {k: int(v) for k, v in by_kind.items()},
            "tasks": int(n_tasks),
            "tensor_bytes": int(tensor_bytes),
            "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
            "text_model": self._db.meta("text_model"),
            "indexes": {
                space: {
                    "version": idx.info.get("version"),
                    "method": idx.info.get("method"),
                    "params": idx.info.get("params", {}),
                    "indexed": idx.main_size,
                    "delta": idx.delta_size,
                    "dim": idx.dim,
                }
                for space, idx in self._indexes.snapshots().items()
            },
        }


def _check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
