"""The tensor-BLOB codec: a LoRA factor as one `tensors` row (dtype, shape, bytes, checksum) and back.

The checksum covers dtype, shape and bytes together (`blob_checksum`), and it is checked before anything is
decoded: a changed dtype or shape column, or truncated bytes, raise `ChecksumError` naming the adapter, never a
reshape error. Whatever slips past it (a row rewritten with a matching checksum) still fails to decode into the
recorded shape, or fails the adapter-level checksum (`LoraAdapter.sha256`) that `Bank.get` checks after decoding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb
import torch

from loragen.bank.device import dtype_name, resolve_dtype
from loragen.bank.errors import ChecksumError
from loragen.bank.lora.adapter import LoraAdapter

Factors = dict[str, dict[str, torch.Tensor]]
"""{"A": {module: tensor}, "B": {module: tensor}}."""

_READ = "SELECT blob_id, module, factor, dtype, shape, sha256, data FROM tensors WHERE blob_id BETWEEN ? AND ?"


def blob_checksum(dtype: str, shape: str, data: bytes) -> str:
    """sha256 of ``"<dtype>;<shape>;"`` followed by the bytes, over the stored column values.

    Schema migration 3 (`store.schema`) computes the same digest in SQL for rows written before it.
    """
    h = hashlib.sha256(f"{dtype};{shape};".encode())
    h.update(data)
    return h.hexdigest()


def corrupt(adapter_id: str, path: Path, detail: str) -> ChecksumError:
    """The error for a damaged stored adapter, naming it and saying what to do (`detail` on one line)."""
    detail = " ".join(detail.split())
    return ChecksumError(
        f"adapter {adapter_id!r}: {detail}; the bank {path} is corrupt: restore it from a backup or delete the "
        "adapter (Bank.delete) and add it again."
    )


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def tensor_rows(adapter_id: str, adapter: LoraAdapter, variant: str) -> list[list[Any]]:
    """One `tensors` row per factor (without `blob_id`): adapter_id, variant, module, factor, dtype, shape, sha256,
    data; modules in the adapter's order, A before B."""
    rows = []
    for module, a, b in adapter.items():
        for factor, t in (("A", a), ("B", b)):
            data, dtype, shape = _tensor_bytes(t), dtype_name(t.dtype), json.dumps(list(t.shape))
            rows.append([adapter_id, variant, module, factor, dtype, shape, blob_checksum(dtype, shape, data), data])
    return rows


def _decode(dtype: str, shape: str, data: bytes) -> torch.Tensor:
    """The tensor a row describes. Raises ValueError or RuntimeError when the columns do not fit each other."""
    dims = json.loads(shape)
    if not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise ValueError(f"shape {shape!r} is not a list of sizes")
    tensor = torch.frombuffer(bytearray(data), dtype=resolve_dtype(dtype)) if data else torch.zeros(0)
    return tensor.reshape(dims)


def read_factors(cur: duckdb.DuckDBPyConnection, adapter_id: str, blob_ids: range, path: Path) -> Factors:
    """The factors stored in `blob_ids`, each row checked against its checksum before it is decoded.

    Raises:
        ChecksumError: a row is missing, does not match its checksum, or does not decode (the message names the
            adapter and the tensor).
    """
    factors: Factors = {"A": {}, "B": {}}
    # One range query for the adapter's consecutive BLOBs: blob ids grow with the adapter's seq, so DuckDB's zone
    # maps skip all but the row group holding them (4 ms for 36 BLOBs among 54,000 rows of 12 KB, against 15-30 ms
    # for 36 primary-key lookups; measured with DuckDB 2.0.1).
    rows = {}
    if len(blob_ids):
        rows = {r[0]: r[1:] for r in cur.execute(_READ, [min(blob_ids), max(blob_ids)]).fetchall()}
    for blob_id in blob_ids:
        row = rows.get(blob_id)
        if row is None:
            raise corrupt(adapter_id, path, "stored tensors do not match their checksum (some are missing)")
        module, factor, dtype, shape, sha, data = row
        if blob_checksum(dtype, shape, data) != sha:
            raise corrupt(adapter_id, path, f"stored tensors do not match their checksum ({module}.lora_{factor}: "
                                            "its dtype, shape or bytes changed)")
        try:
            factors[factor][module] = _decode(dtype, shape, data)
        except (ValueError, RuntimeError, TypeError, KeyError) as err:
            raise corrupt(adapter_id, path, f"stored tensors do not match their checksum ({module}.lora_{factor} "
                                            f"does not decode: {err})") from None
    return factors
