"""Adapters in the bank: validate and write one (row, tensors, embeddings in one transaction), read it back with
its checksums verified, list, delete, import from and export to PEFT directories.

The public contract (arguments, errors, guarantees) is documented on `Bank`; this module does the work.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import torch

from loragen.bank.base_model import PACKAGED, canonical_base_model_id, packaged_model, resolve_base_model
from loragen.bank.embed import TextEncoder, weight_embedding
from loragen.bank.errors import BankError, DuplicateAdapterError, NotFoundError, UnknownBaseModelError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import canonicalize
from loragen.bank.lora.layers import target_weights
from loragen.bank.lora.peft_format import load_peft, save_peft
from loragen.bank.records import AdapterKind, AdapterRecord, TaskRecord
from loragen.bank.store.blobs import corrupt, read_factors, tensor_rows
from loragen.bank.store.connection import Database
from loragen.bank.store.indexes import Entry, Indexes
from loragen.bank.store.schema import BLOBS_PER_ADAPTER
from loragen.bank.store.tasks import TaskTable

logger = logging.getLogger(__name__)

WEIGHT_MODEL = "delta-sketch-v1"
"""The `model` recorded for weight-space embeddings (`weight_embedding`)."""
CANONICAL_SHA_MEMO = 4096  # adapters whose canonical checksum `add` remembers (~150 bytes each)
OnDuplicate = Literal["error", "skip"]
KINDS: tuple[AdapterKind, ...] = ("final", "checkpoint", "generated", "uploaded")

_LAYOUT_COLUMNS = ("seq", "n_modules", "fan_in_fan_out", "has_original")
_RECORD_COLUMNS = (
    "id, base_model, r, lora_alpha, target_modules, sha256, task, description, kind, source, canonical, "
    "created_at, metrics, metadata"
)


def _js(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _record_from_row(row: tuple, path: Path) -> AdapterRecord:
    """The record in an `adapters` row; its JSON columns must parse to the types written.

    Raises:
        ChecksumError: a JSON column was damaged (the message names the adapter).
    """
    id_, base_model, r, alpha, targets, sha, task, description, kind, source, canonical, created, metrics, meta = row
    parsed = {}
    for column, text, kind_of in (("target_modules", targets, list), ("metrics", metrics, dict),
                                  ("metadata", meta, dict)):
        try:
            parsed[column] = json.loads(text)
        except (ValueError, TypeError):
            parsed[column] = None
        if not isinstance(parsed[column], kind_of):
            raise corrupt(id_, path, f"stored metadata does not match what was written ({column} is not a JSON "
                                     f"{kind_of.__name__})")
    return AdapterRecord(
        id=id_,
        base_model=base_model,
        r=int(r),
        lora_alpha=float(alpha),
        target_modules=tuple(parsed["target_modules"]),
        sha256=sha,
        task=task,
        description=description,
        kind=kind,
        source=source,
        canonical=bool(canonical),
        created_at=str(created),
        metrics=parsed["metrics"],
        metadata=parsed["metadata"],
    )


class _Duplicate(Exception):
    def __init__(self, existing: str):
        self.existing = existing


class AdapterTable:
    """The bank's adapters (see `Bank.add`, `Bank.get` and the other adapter methods of `Bank`).

    Args:
        db: the bank's database.
        tasks: its tasks (an adapter's text embedding includes its task's paraphrases).
        indexes: its search indexes (a committed adapter is published there).
        encoder: returns the text encoder (loaded on first use).
    """

    def __init__(self, db: Database, tasks: TaskTable, indexes: Indexes, encoder: Callable[[], TextEncoder]):
        self._db, self._tasks, self._indexes, self._encoder = db, tasks, indexes, encoder
        self._base_models: dict[str, torch.nn.Module] = {}
        # (base model, module shapes) already checked: a service stores thousands of generated adapters of one shape
        self._fits: set[tuple[str, tuple]] = set()
        # (adapter.sha256(), base model) -> its canonical form's sha256: a generator that returns an adapter the bank
        # already holds (the CVAE does for most rewordings of a task) is found without canonicalising it again
        self._canonical_shas: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._canonical_shas_lock = threading.Lock()
        self._text_model_recorded: str | None = None  # the meta row 'text_model' this process has committed

    # ---- write --------------------------------------------------------------------------------------------
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
        """Validate and store `adapter`; see `Bank.add`."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if on_duplicate not in ("error", "skip"):
            raise ValueError(f"on_duplicate must be 'error' or 'skip', got {on_duplicate!r}")
        adapter.check_finite()
        base_model = self._check_base_model(adapter)
        key = (adapter.sha256(), base_model)
        with self._canonical_shas_lock:
            known = self._canonical_shas.get(key)
        if known is not None and (existing := self._id_by_sha(known)) is not None:
            return self._duplicate(existing, on_duplicate)
        canon = replace(canonicalize(adapter.to("cpu")), base_model=base_model)
        sha = canon.sha256()
        with self._canonical_shas_lock:
            self._canonical_shas[key] = sha
            while len(self._canonical_shas) > CANONICAL_SHA_MEMO:
                self._canonical_shas.popitem(last=False)
        existing = self._id_by_sha(sha)
        if existing is not None:
            return self._duplicate(existing, on_duplicate)
        task_record = self._tasks.find(task)
        description = description or adapter.metadata.get("description") or (
            task_record.description if task_record else None
        )
        metadata = {k: v for k, v in canon.metadata.items() if k not in ("id", "task", "description")}
        if paraphrases:
            metadata["paraphrases"] = list(paraphrases)
        if keep_original:
            metadata["original"] = {"r": adapter.r, "lora_alpha": adapter.lora_alpha, "use_rslora": adapter.use_rslora}
        adapter_id = uuid.uuid4().hex[:16]
        row = [
            adapter_id, base_model, canon.r, canon.lora_alpha, _js(sorted(canon.target_modules)), canon.fan_in_fan_out,
            canon.use_rslora, keep_original, len(canon.modules), task, description, kind, source, _js(metrics or {}),
            _js(metadata), sha, adapter.sha256() if keep_original else None,
        ]
        tensors = tensor_rows(adapter_id, canon, "canonical")  # canonical first: get() relies on the order
        if keep_original:
            tensors += tensor_rows(adapter_id, adapter.to("cpu"), "original")
        if len(tensors) > BLOBS_PER_ADAPTER:
            raise BankError(f"an adapter may hold at most {BLOBS_PER_ADAPTER} tensors, this one has {len(tensors)}")
        vectors = {"weight": weight_embedding(canon),
                   "text": self._text_vector(description, task_record, paraphrases)}
        try:
            seq = self._write(row, tensors, vectors)
        except _Duplicate as dup:
            return self._duplicate(dup.existing, on_duplicate)
        self._indexes.publish(seq, Entry(adapter_id, task, description, kind), vectors)
        logger.debug("bank: added adapter %s (task %s, seq %d)", adapter_id, task, seq)
        return adapter_id

    def _write(self, row: list, tensors: list[list], vectors: dict[str, np.ndarray | None]) -> int:
        """Insert an adapter's row, tensors and embeddings in one transaction; returns its seq.

        Raises:
            _Duplicate: another thread stored the same adapter since `add` checked.
        """
        adapter_id, sha = row[0], row[15]
        with self._db.transaction() as cur:
            again = cur.execute("SELECT id FROM adapters WHERE sha256 = ?", [sha]).fetchone()
            if again is not None:
                raise _Duplicate(again[0])
            seq = cur.execute("SELECT nextval('adapter_seq')").fetchone()[0]
            # Column order of `adapters` (store/schema.py): id, seq, base_model ... canonical (always true) ...
            cur.execute(
                "INSERT INTO adapters VALUES (?, ?, ?, ?, ?, ?, ?, ?, true, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?)",
                [row[0], seq, *row[1:]],
            )
            # One multi-row INSERT: DuckDB runs `executemany` as one statement per row (46 ms of CPU for 36 BLOBs,
            # against 5 ms for one statement; DuckDB 2.0.1).
            if tensors:
                cur.execute(
                    "INSERT INTO tensors (blob_id, adapter_id, variant, module, factor, dtype, shape, sha256, data) "
                    "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(tensors)),
                    [value for k, t in enumerate(tensors) for value in (seq * BLOBS_PER_ADAPTER + k, *t)],
                )
            insert_embedding(cur, adapter_id, "weight", WEIGHT_MODEL, vectors["weight"])
            name = self._encoder().name if vectors["text"] is not None else None
            if name is not None:
                insert_embedding(cur, adapter_id, "text", name, vectors["text"])
                if name != self._text_model_recorded:  # one statement less per add once it is recorded
                    cur.execute("INSERT OR IGNORE INTO meta VALUES ('text_model', ?)", [name])
        if name is not None:
            self._text_model_recorded = name
        return int(seq)

    def _duplicate(self, existing: str, on_duplicate: OnDuplicate) -> str:
        if on_duplicate == "skip":
            return existing
        raise DuplicateAdapterError(
            f"the bank {self._db.path} already holds this adapter as {existing!r} (same canonical checksum); "
            "use that id, or pass on_duplicate='skip' (CLI: --skip-duplicates) to get it back without an error."
        )

    def _check_base_model(self, adapter: LoraAdapter) -> str:
        """The adapter's base-model id, after checking every module fits that model (on the meta device)."""
        base_id = canonical_base_model_id(adapter.base_model or None)
        signature = (base_id, tuple(sorted(adapter.shapes().items())))
        if signature in self._fits:
            return base_id
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
        self._fits.add(signature)
        return base_id

    def _text_vector(self, description: str | None, task: TaskRecord | None,
                     paraphrases: Sequence[str] = ()) -> np.ndarray | None:
        texts = ([description] if description else []) + [p for p in paraphrases if p]
        if task is not None:
            texts += list(task.paraphrases)
        if not texts:
            return None
        vec = self._encoder().encode(texts).mean(axis=0)
        return (vec / max(float(np.linalg.norm(vec)), 1e-12)).astype(np.float32)

    def _id_by_sha(self, sha: str) -> str | None:
        row = self._db.cursor().execute("SELECT id FROM adapters WHERE sha256 = ?", [sha]).fetchone()
        return row[0] if row else None

    def delete(self, adapter_id: str) -> None:
        """Remove an adapter, its tensors and embeddings in one transaction; see `Bank.delete`."""
        with self._db.transaction() as cur:
            row = cur.execute("SELECT seq FROM adapters WHERE id = ?", [adapter_id]).fetchone()
            if row is None:
                raise NotFoundError(f"no adapter {adapter_id!r} in the bank {self._db.path}")
            for table in ("tensors", "embeddings"):
                cur.execute(f"DELETE FROM {table} WHERE adapter_id = ?", [adapter_id])
            cur.execute("DELETE FROM adapters WHERE id = ?", [adapter_id])
        self._indexes.forget(int(row[0]))

    def import_peft(self, path: str | os.PathLike, description: str | None, task: str | None, kind: AdapterKind,
                    keep_original: bool, on_duplicate: OnDuplicate, base_model: str | None = None,
                    paraphrases: Sequence[str] = ()) -> str:
        """Load a PEFT directory and `add` it; see `Bank.import_peft`."""
        adapter = load_peft(path)
        adapter = replace(adapter, base_model=adapter_base_model(path, adapter.base_model, base_model))
        return self.add(
            adapter,
            task=task or adapter.metadata.get("task"),
            description=description,
            kind=kind,
            source=str(Path(path).resolve()),
            metrics=adapter.metadata.get("metrics"),
            keep_original=keep_original,
            on_duplicate=on_duplicate,
            paraphrases=paraphrases,
        )

    def export_peft(self, adapter_id: str, path: str | os.PathLike, original: bool) -> Path:
        """Write an adapter as a PEFT directory; see `Bank.export_peft`."""
        return save_peft(self.get(adapter_id, original=original), path)

    # ---- read ---------------------------------------------------------------------------------------------
    def record(self, adapter_id: str) -> AdapterRecord:
        """The stored metadata of one adapter; see `Bank.record`."""
        return self._record_layout(adapter_id)[0]

    def _record_layout(self, adapter_id: str) -> tuple[AdapterRecord, dict[str, Any]]:
        """The record plus what `get` needs to find and rebuild the tensors (seq, n_modules, ...)."""
        row = self._db.cursor().execute(
            f"SELECT {_RECORD_COLUMNS}, {', '.join(_LAYOUT_COLUMNS)} FROM adapters WHERE id = ?", [adapter_id]
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"no adapter {adapter_id!r} in the bank {self._db.path}; list them with `loragen bank stats` or "
                "bank.adapters()."
            )
        k = len(_LAYOUT_COLUMNS)
        return _record_from_row(row[:-k], self._db.path), dict(zip(_LAYOUT_COLUMNS, row[-k:]))

    def records(self, task: str | None = None, kind: str | None = None) -> list[AdapterRecord]:
        """Metadata of all adapters (optionally of one task and/or kind), oldest first; see `Bank.adapters`."""
        where, params = [], []
        for column, value in (("task", task), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_RECORD_COLUMNS} FROM adapters" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.cursor().execute(sql + " ORDER BY seq", params).fetchall()
        return [_record_from_row(r, self._db.path) for r in rows]

    def get(self, adapter_id: str, original: bool = False) -> LoraAdapter:
        """The adapter with its tensors, checksums verified; see `Bank.get`."""
        rec, layout = self._record_layout(adapter_id)
        if original and not layout["has_original"]:
            raise NotFoundError(f"adapter {adapter_id!r} was stored without its original factors (keep_original)")
        n = 2 * layout["n_modules"]  # blobs per variant: A and B of every module
        first = layout["seq"] * BLOBS_PER_ADAPTER + (n if original else 0)
        factors = read_factors(self._db.cursor(), adapter_id, range(first, first + n), self._db.path)
        expected = rec.sha256 if not original else self._original_sha(adapter_id)
        try:
            adapter = _adapter_from(rec, factors, original, layout["fan_in_fan_out"])
        except (ValueError, TypeError) as err:  # factors that do not form an adapter (LoraAdapter's own checks)
            raise corrupt(adapter_id, self._db.path, "stored tensors do not match their checksum (they do not form "
                                                     f"the recorded adapter: {err})") from None
        if adapter.sha256() != expected:
            raise corrupt(adapter_id, self._db.path, "stored tensors do not match their checksum (the adapter's "
                                                     f"recorded sha256 {expected[:12]}…)")
        return adapter

    def _original_sha(self, adapter_id: str) -> str:
        sql = "SELECT original_sha256 FROM adapters WHERE id = ?"
        return self._db.cursor().execute(sql, [adapter_id]).fetchone()[0]


def adapter_base_model(adapter_dir: str | os.PathLike, recorded: str, override: str | None = None) -> str:
    """The base model an imported PEFT directory is for: `override` when given, else its config's
    `base_model_name_or_path`, where a relative path is taken relative to the adapter directory (not the cwd).

    Raises:
        UnknownBaseModelError: the recorded name is neither a packaged model, an absolute directory, nor a
            directory relative to the adapter (the message says how to name the base model instead).
    """
    if override:
        return override
    if not recorded or packaged_model(recorded) is not None or Path(recorded).expanduser().is_absolute():
        return recorded
    local = Path(adapter_dir) / recorded
    if (local / "config.json").is_file():
        return str(local.resolve())
    raise UnknownBaseModelError(
        f"unknown base model {recorded!r} in {Path(adapter_dir) / 'adapter_config.json'}: not a packaged model "
        f"({', '.join(m.aliases[-1] for m in PACKAGED)}) nor a transformers directory relative to the adapter "
        f"({local.resolve()} has no config.json); give the base model explicitly (CLI: --base-model NAME|DIR)")


def insert_embedding(cur: duckdb.DuckDBPyConnection, adapter_id: str, space: str, model: str, vec: np.ndarray) -> None:
    """Insert one embedding row (float32 bytes) inside the caller's transaction."""
    vec = np.ascontiguousarray(vec, dtype=np.float32)
    cur.execute("INSERT INTO embeddings VALUES (?, ?, ?, ?, ?)", [adapter_id, space, model, len(vec), vec.tobytes()])


def _adapter_from(rec: AdapterRecord, factors: dict, original: bool, fan_in_fan_out: bool) -> LoraAdapter:
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
