"""FAISS index helpers: method choice, recall, atomic write with checksum, the delta snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from loragen.bank.errors import IndexCorruptError
from loragen.bank.store.vector_index import HNSWParams, VectorIndex, build_index, choose_method, read_index, write_index


def _unit(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, d, seed):
    """Vectors near 20 centres (low intrinsic dimension, like embeddings of related descriptions)."""
    rng = np.random.default_rng(seed)
    centres = _unit(20, d, seed + 1)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_choose_method():
    assert choose_method(10, threshold=100) == "flat"
    assert choose_method(101, threshold=100) == "hnsw"
    assert choose_method(5, "hnsw") == "hnsw"
    with pytest.raises(ValueError, match="'auto', 'flat' or 'hnsw'"):
        choose_method(5, "ivf")
    with pytest.raises(ValueError, match="HNSWParams.m"):
        HNSWParams(m=0)


def test_flat_is_exact_and_hnsw_has_high_recall():
    x = _clustered(3000, 32, 0)
    ids = np.arange(100, 3100)
    q = _clustered(50, 32, 9)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10] + 100
    flat, info = build_index(x, ids, threshold=10_000)
    assert info["method"] == "flat"
    assert np.array_equal(flat.search(q, 10)[1], exact)
    hnsw, info = build_index(x, ids, threshold=1000)
    assert info == {"method": "hnsw", "params": {"m": 32, "ef_construction": 80, "ef_search": 96}}
    found = hnsw.search(q, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
    assert recall >= 0.95


def test_write_read_checks_the_checksum(tmp_path):
    index, _ = build_index(_unit(20, 8, 0), np.arange(20))
    path = tmp_path / "idx" / "text-v1.faiss"
    sha = write_index(index, path)
    assert read_index(path, sha).ntotal == 20
    assert [p.name for p in path.parent.iterdir()] == ["text-v1.faiss"]  # no temp file left
    with pytest.raises(IndexCorruptError, match="recorded"):
        read_index(path, "0" * 64)
    with pytest.raises(IndexCorruptError, match="missing"):
        read_index(tmp_path / "nope.faiss", sha)


def test_vector_index_merges_main_and_delta_and_snapshots_are_immutable():
    x = _unit(30, 16, 1)
    main, info = build_index(x[:20], np.arange(1, 21))
    snap = VectorIndex(dim=16).with_main(main, 20, info, 16)
    grown = snap.with_added(x[20:], np.arange(21, 31))
    assert (snap.delta_size, grown.delta_size, grown.main_size) == (0, 10, 20)
    scores, ids = grown.search(x[25], 3)
    assert ids[0] == 26 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores) <= 0)
    brute = np.argsort(-(x @ x[3]))[:5] + 1
    assert np.array_equal(grown.search(x[3], 5)[1], brute)
    # A new main index covering ids <= 25 drops those from the delta.
    main2, info2 = build_index(x[:25], np.arange(1, 26))
    swapped = grown.with_main(main2, 25, info2, 16)
    assert (swapped.main_size, swapped.delta_size) == (25, 5)
    assert np.array_equal(swapped.search(x[3], 5)[1], brute)
    with pytest.raises(ValueError, match="does not match"):
        grown.with_added(_unit(1, 8, 0), np.array([99]))


def test_delta_skips_ids_the_main_index_already_covers():
    x = _unit(5, 8, 2)
    main, info = build_index(x[:4], np.arange(1, 5))
    snap = VectorIndex(dim=8).with_main(main, 4, info, 8).with_added(x[3:], np.array([4, 5]))
    assert snap.delta_ids.tolist() == [5]
    assert snap.search(x[3], 5)[1].tolist().count(4) == 1
