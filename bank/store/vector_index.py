"""FAISS indexes of the bank's embeddings: built, persisted atomically, verified, and searched with a live delta.

- `build_index` picks exact search (`IndexFlatIP`) for small banks and HNSW above `APPROX_THRESHOLD` vectors
  (`choose_method`); the choice and its parameters are returned so the bank records them.
- `write_index` writes to a temporary file, fsyncs it, renames it into place and fsyncs the directory, and returns
  the file's sha256; `read_index` refuses a file whose sha256 differs from the recorded one (`IndexCorruptError`),
  so a damaged index is rebuilt from DuckDB, never trusted.
- `VectorIndex` is an immutable snapshot: the persisted main index plus a small exact delta of vectors added since
  the last re-index. Adding returns a new snapshot, so searches running in other threads never see a half update.
  All vectors are L2-normalised and compared by inner product (= cosine).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from loragen.bank.errors import IndexCorruptError

logger = logging.getLogger(__name__)

Method = Literal["auto", "flat", "hnsw"]

APPROX_THRESHOLD = 20_000
"""Above this many vectors `auto` builds HNSW: below it an exact scan takes well under a millisecond anyway."""


@dataclass(frozen=True)
class HNSWParams:
    """HNSW parameters (Malkov & Yashunin, https://arxiv.org/abs/1603.09320).

    Attributes:
        m: neighbours per node; more gives better recall and a bigger, slower-to-build graph.
        ef_construction: beam width while building.
        ef_search: beam width while searching; the recall/latency knob (bench/search.py measures it).
    """

    m: int = 32
    ef_construction: int = 80
    ef_search: int = 96

    def __post_init__(self) -> None:
        for name in ("m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"HNSWParams.{name} must be >= 1, got {getattr(self, name)}")


def choose_method(n: int, method: Method = "auto", threshold: int = APPROX_THRESHOLD) -> Literal["flat", "hnsw"]:
    """The index type for `n` vectors: `method` itself, or for "auto" exact below `threshold`, HNSW above."""
    if method not in ("auto", "flat", "hnsw"):
        raise ValueError(f"index method must be 'auto', 'flat' or 'hnsw', got {method!r}")
    if method != "auto":
        return method
    return "hnsw" if n > threshold else "flat"


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    method: Method = "auto",
    threshold: int = APPROX_THRESHOLD,
    hnsw: HNSWParams | None = None,
) -> tuple[faiss.Index, dict[str, Any]]:
    """Build an inner-product index over `vectors` (n, d) labelled by int64 `ids` (n,).

    Returns:
        (index, info) with info = {"method": "flat"|"hnsw", "params": {...}}.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"vectors must be (n, d) with one id per row, got {vectors.shape} and {ids.shape} ids")
    chosen = choose_method(len(vectors), method, threshold)
    d = vectors.shape[1]
    params: dict[str, Any] = {}
    if chosen == "flat":
        inner: faiss.Index = faiss.IndexFlatIP(d)
    else:
        hnsw = hnsw or HNSWParams()
        inner = faiss.IndexHNSWFlat(d, hnsw.m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = hnsw.ef_construction
        inner.hnsw.efSearch = hnsw.ef_search
        params = {"m": hnsw.m, "ef_construction": hnsw.ef_construction, "ef_search": hnsw.ef_search}
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, ids)
    return index, {"method": chosen, "params": params}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_index(index: faiss.Index, path: Path) -> str:
    """Write `index` to `path` atomically (temp file, fsync, rename, fsync dir) and return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return digest


def read_index(path: Path, sha256: str) -> faiss.Index:
    """Read an index written by `write_index` after checking its checksum.

    Raises:
        IndexCorruptError: the file is missing or its sha256 differs from `sha256`.
    """
    if not path.is_file():
        raise IndexCorruptError(f"index file {path} is missing")
    actual = sha256_file(path)
    if actual != sha256:
        raise IndexCorruptError(f"index file {path} has sha256 {actual[:12]}…, the bank recorded {sha256[:12]}…")
    return faiss.read_index(str(path))


def to_gpu_if_available(index: faiss.Index) -> faiss.Index:
    """A GPU copy of an exact index when faiss-gpu and a GPU are present; the index itself otherwise.

    HNSW has no GPU implementation in FAISS and stays on the CPU.
    """
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return index
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if not isinstance(inner, faiss.IndexFlat):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as err:  # a GPU build without a usable device: exact CPU search still works
        logger.warning("faiss-gpu present but the index could not be moved to the GPU (%s); searching on CPU", err)
        return index


def _empty(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, d), dtype=np.float32), np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class VectorIndex:
    """An immutable search snapshot: main FAISS index (vectors with id <= `max_seq`) plus an exact delta.

    Attributes:
        dim: vector length (0 while the space is empty and nothing fixed it yet).
        main: the persisted index, or None before the first re-index.
        max_seq: highest id the main index covers (0 when none).
        info: what the bank recorded about the main index (version, method, params, ...).
        delta_vectors: (n_delta, dim) vectors added since the main index was built.
        delta_ids: (n_delta,) their ids.
    """

    dim: int = 0
    main: faiss.Index | None = None
    max_seq: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    delta_vectors: np.ndarray = field(default_factory=lambda: _empty(0)[0])
    delta_ids: np.ndarray = field(default_factory=lambda: _empty(0)[1])

    @property
    def main_size(self) -> int:
        return int(self.main.ntotal) if self.main is not None else 0

    @property
    def delta_size(self) -> int:
        return len(self.delta_ids)

    def with_added(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """A new snapshot with (n, dim) `vectors` appended to the delta; ids the main index already covers are skipped.

        (A re-index can pick up an adapter committed just before it started but published to the delta just after.)
        """
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if self.main is not None:
            fresh = ids > self.max_seq
            ids, vectors = ids[fresh], vectors[fresh]
        dim = self.dim or vectors.shape[1]
        if vectors.shape[1] != dim:
            raise ValueError(f"vector length {vectors.shape[1]} does not match the index's {dim}")
        old_v = self.delta_vectors if self.delta_size else _empty(dim)[0]
        return VectorIndex(
            dim=dim,
            main=self.main,
            max_seq=self.max_seq,
            info=self.info,
            delta_vectors=np.concatenate([old_v, vectors]),
            delta_ids=np.concatenate([self.delta_ids, ids]),
        )

    def with_main(self, main: faiss.Index, max_seq: int, info: dict[str, Any], dim: int) -> VectorIndex:
        """A new snapshot using `main` for ids <= `max_seq`; delta entries it now covers are dropped."""
        keep = self.delta_ids > max_seq
        return VectorIndex(
            dim=dim or self.dim,
            main=main,
            max_seq=max_seq,
            info=info,
            delta_vectors=self.delta_vectors[keep] if self.delta_size else _empty(dim or self.dim)[0],
            delta_ids=self.delta_ids[keep],
        )

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` (scores, ids) for one query (dim,), best first, from the main index and the delta together."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.dim and query.shape[-1] != self.dim:
            raise ValueError(f"query has length {query.shape[-1]}, the index holds vectors of length {self.dim}")
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, ids = [], []
        if self.main_size:
            s, i = self.main.search(q, min(k, self.main_size))
            ok = i[0] >= 0
            scores.append(s[0][ok])
            ids.append(i[0][ok])
        if self.delta_size:
            s = self.delta_vectors @ q[0]  # (n_delta,)
            top = np.argsort(-s)[:k]
            scores.append(s[top])
            ids.append(self.delta_ids[top])
        if not scores:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        all_s, all_i = np.concatenate(scores), np.concatenate(ids)
        order = np.argsort(-all_s, kind="stable")[:k]
        return all_s[order], all_i[order]
