"""The bank's FAISS index lifecycle: what searches see in memory, loading, searching, re-indexing, stale files.

Searches never touch DuckDB: they read an immutable snapshot per space (`VectorIndex`: the recorded main index
plus a delta of adapters added since) and an in-memory catalogue of live adapters (`Entry`). Writers publish a
committed adapter by swapping in new snapshots under a short lock, so a search never waits for a write or a
re-index and never sees a half update.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loragen.bank.errors import IndexCorruptError
from loragen.bank.records import SearchHit
from loragen.bank.store.connection import Database
from loragen.bank.store.vector_index import VectorIndex, build_index, read_index, to_gpu_if_available, write_index

logger = logging.getLogger(__name__)

SPACES = ("text", "weight")
"""Embedding spaces: descriptions (sentence-transformers) and weights (`weight_embedding`)."""

_VERSION_KEYS = ("version", "file", "method", "params", "ntotal", "max_seq", "sha256", "duration_s", "created_at")


@dataclass(frozen=True)
class Entry:
    """What a search hit needs about a live adapter, kept in memory so searches never touch DuckDB."""

    id: str
    task: str | None
    description: str | None
    kind: str


class Indexes:
    """Every space's search snapshot and the files behind them, for one bank.

    Args:
        db: the bank's database.
        directory: where the index files live (`loragen.bank.paths.index_dir`).
        approx_threshold: above this many vectors re-indexing builds HNSW instead of an exact index.
    """

    def __init__(self, db: Database, directory: Path, approx_threshold: int):
        self._db = db
        self.directory = directory
        self.approx_threshold = approx_threshold
        self._reindex_lock = threading.Lock()  # at most one re-index at a time
        self._lock = threading.Lock()  # guards swapping the snapshots below (never held during I/O)
        self._entries: dict[int, Entry] = {}
        self._indexes: dict[str, VectorIndex] = {space: VectorIndex() for space in SPACES}

    # ---- loading ------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Read the catalogue and every space's recorded index (rebuilding a damaged one); drop stale files."""
        rows = self._db.cursor().execute("SELECT seq, id, task, description, kind FROM adapters").fetchall()
        self._entries = {int(seq): Entry(i, t, d, k) for seq, i, t, d, k in rows}
        for space in SPACES:
            self._load_space(space)
        self._remove_stale_files()

    def _load_space(self, space: str) -> None:
        """Load the recorded index of `space` (checksum verified) plus its delta; rebuild it if damaged."""
        info = self._current_version(space)
        if info is None:
            vecs, seqs = self._vectors(space)
            index = VectorIndex(dim=vecs.shape[1]) if len(seqs) else VectorIndex()
            self._indexes[space] = index.with_added(vecs, seqs) if len(seqs) else index
            return
        try:
            main = read_index(self.directory / info["file"], info["sha256"])
        except IndexCorruptError as err:
            logger.warning("bank: %s; rebuilding the %s index from DuckDB", err, space)
            self.reindex_space(space)
            return
        vecs, seqs = self._vectors(space, min_seq=info["max_seq"])
        index = VectorIndex(dim=int(main.d)).with_main(to_gpu_if_available(main), info["max_seq"], info, int(main.d))
        self._indexes[space] = index.with_added(vecs, seqs) if len(seqs) else index

    def _vectors(self, space: str, min_seq: int = 0, max_seq: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) vectors and (n,) seqs of `space` with min_seq < seq <= max_seq, from DuckDB."""
        sql = (
            "SELECT a.seq, e.vector FROM embeddings e JOIN adapters a ON a.id = e.adapter_id "
            "WHERE e.space = ? AND a.seq > ?" + (" AND a.seq <= ?" if max_seq is not None else "") + " ORDER BY a.seq"
        )
        params = [space, min_seq] + ([max_seq] if max_seq is not None else [])
        rows = self._db.cursor().execute(sql, params).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        seqs = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return vecs, seqs

    def _current_version(self, space: str) -> dict[str, Any] | None:
        row = self._db.cursor().execute(
            f"SELECT {', '.join(_VERSION_KEYS)} FROM index_versions WHERE space = ? ORDER BY version DESC LIMIT 1",
            [space],
        ).fetchone()
        if row is None:
            return None
        info = dict(zip(_VERSION_KEYS, row))
        info["params"] = json.loads(info["params"])
        info["created_at"] = str(info["created_at"])
        return info

    # ---- the live catalogue -------------------------------------------------------------------------------
    def publish(self, seq: int, entry: Entry, vectors: dict[str, np.ndarray | None]) -> None:
        """Make a committed adapter searchable: add it to the catalogue and to each space's delta."""
        with self._lock:
            for space, vec in vectors.items():
                if vec is not None:
                    self._indexes[space] = self._indexes[space].with_added(vec[None, :], np.array([seq]))
            self._entries[seq] = entry

    def forget(self, seq: int) -> None:
        """Stop returning a deleted adapter (its vectors leave the main index at the next re-index)."""
        with self._lock:
            self._entries.pop(seq, None)

    def snapshots(self) -> dict[str, VectorIndex]:
        """The current snapshot of every space."""
        with self._lock:
            return dict(self._indexes)

    # ---- search -------------------------------------------------------------------------------------------
    def search(
        self, space: str, query: np.ndarray, k: int, exclude_tasks: Collection[str] = (), kind: str | None = None
    ) -> list[SearchHit]:
        """The `k` live adapters nearest to `query` in `space`, best first, skipping `exclude_tasks` and, when
        `kind` is given, adapters of any other kind."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        with self._lock:
            index, entries = self._indexes[space], self._entries
        excluded = set(exclude_tasks)
        fetch = k
        while True:
            # Hits of deleted adapters (still in the main index until the next re-index), of excluded tasks and of
            # other kinds are dropped, so fetch more until k remain or the index has nothing more to give.
            scores, seqs = index.search(query, fetch)
            hits = []
            for score, seq in zip(scores.tolist(), seqs.tolist()):
                entry = entries.get(seq)
                if entry is not None and entry.task not in excluded and (kind is None or entry.kind == kind):
                    hits.append(SearchHit(id=entry.id, score=float(score), task=entry.task,
                                          description=entry.description))
            if len(hits) >= k or len(seqs) < fetch:
                return hits[:k]
            fetch *= 4

    # ---- re-indexing --------------------------------------------------------------------------------------
    def reindex(self) -> dict[str, dict[str, Any]]:
        """Rebuild and record every space's index (see `Bank.reindex`); one re-index at a time."""
        with self._reindex_lock:
            return {space: self.reindex_space(space) for space in SPACES}

    def reindex_space(self, space: str) -> dict[str, Any]:
        """Build `space`'s index over every committed vector, write it, record it, then swap it in."""
        start = time.perf_counter()
        max_seq = int(self._db.cursor().execute("SELECT coalesce(max(seq), 0) FROM adapters").fetchone()[0])
        vecs, seqs = self._vectors(space, max_seq=max_seq)
        dim = vecs.shape[1] if len(seqs) else self._indexes[space].dim
        if not dim:  # nothing was ever embedded in this space: no index to build
            return {"version": None, "method": None, "ntotal": 0, "max_seq": max_seq, "duration_s": 0.0}
        main, built = build_index(vecs.reshape(len(seqs), dim), seqs, threshold=self.approx_threshold)
        prev = self._current_version(space)
        version = (prev["version"] if prev else 0) + 1
        file = f"{space}-v{version}.faiss"
        sha = write_index(main, self.directory / file)
        duration = time.perf_counter() - start
        info = {"version": version, "file": file, "method": built["method"], "params": built["params"],
                "ntotal": int(main.ntotal), "max_seq": max_seq, "sha256": sha, "duration_s": duration}
        with self._db.transaction() as cur:
            cur.execute(
                "INSERT INTO index_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [space, version, file, built["method"], json.dumps(built["params"], sort_keys=True), info["ntotal"],
                 max_seq, sha, duration],
            )
        with self._lock:
            self._indexes[space] = self._indexes[space].with_main(to_gpu_if_available(main), max_seq, info, dim)
        self._remove_stale_files()
        logger.info("bank: %s index v%d (%s) over %d vectors built in %.2f s", space, version, built["method"],
                    info["ntotal"], duration)
        return info

    def _remove_stale_files(self) -> None:
        """Delete index files no recorded current version points to (older versions, crashed re-indexes)."""
        if not self.directory.is_dir():
            return
        keep = {info["file"] for space in SPACES if (info := self._current_version(space))}
        for file in self.directory.iterdir():
            if file.name not in keep and (file.suffix in (".faiss", ".tmp")):
                try:
                    file.unlink()
                except FileNotFoundError:
                    pass
