"""The bank store: `Bank` (adapters, tasks and embeddings in one DuckDB file, FAISS indexes beside it).

Usage::

    from loragen.bank.store import Bank

    with Bank.open() as bank:                       # the default bank, `loragen.bank.paths.bank_path()`
        hits = bank.search_text("tell Polish from Czech", k=5, kind="final")
        adapter = bank.get(hits[0].id)

The modules behind the face, one job each: `bank` (the `Bank` facade), `connection` (DuckDB connection, cursors,
transactions, meta keys), `tasks`, `adapters` (validate, write, read, delete, import, export), `blobs` (tensor codec
with checksums over dtype, shape and bytes), `indexes` (the bank's FAISS index lifecycle), `vector_index` (FAISS
snapshots and index files), `schema` (versioned migrations) and `schedule` (scheduled re-indexing).
"""

from __future__ import annotations

from pathlib import Path

from loragen.bank import paths
from loragen.bank.records import AdapterKind, AdapterRecord, SearchHit, TaskRecord
from loragen.bank.store.adapters import KINDS, WEIGHT_MODEL, OnDuplicate
from loragen.bank.store.bank import Bank
from loragen.bank.store.indexes import SPACES

index_dir = paths.index_dir


def default_bank_path() -> Path:
    """The default bank file (`loragen.bank.paths.bank_path`)."""
    return paths.bank_path()


__all__ = [
    "KINDS",
    "SPACES",
    "WEIGHT_MODEL",
    "AdapterKind",
    "AdapterRecord",
    "Bank",
    "OnDuplicate",
    "SearchHit",
    "TaskRecord",
    "default_bank_path",
    "index_dir",
]
