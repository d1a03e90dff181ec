"""Adapter lookup latency as the bank grows: `Bank.get` (primary-key lookups per BLOB) for early vs late adapters,
against the schema-1 design (one scan filtered on adapter_id), in the live session that wrote the adapters, after
reopening, and on a copy with DuckDB's default BLOB compression (the design choices in `bank/schema.py`).

Run:
    HF_HUB_OFFLINE=1 python bench/bank_lookup.py            # writes bench/results/bank_lookup.json
    HF_HUB_OFFLINE=1 python bench/bank_lookup.py --sizes 100,400

Output JSON per bank size (adapters on two MiniLM feed-forward layers at r=16: BLOBs of 24 KB (A) and 98 KB (B),
about the 100 KB tensors where DuckDB's default BLOB compression made lookups scan): median over the first and the
last 20 adapters of the best-of-5 latency (ms) of each lookup.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch
from tqdm import tqdm

from loragen.bank.lora import LoraAdapter
from loragen.bank.store import Bank

# The schema-1 lookup: all of an adapter's BLOBs by a scan filtered on adapter_id (Bank.get now does one
# primary-key lookup per BLOB, by blob_id).
_SCAN = "SELECT module, factor, data FROM tensors WHERE adapter_id = ?"


def _adapter(seed: int, r: int = 16) -> LoraAdapter:
    """MiniLM feed-forward up-projections (384 -> 1536) of two layers: B is 1536 x 16 floats = 98 KB per BLOB."""
    g = torch.Generator().manual_seed(seed)
    names = [f"encoder.layer.{i}.intermediate.dense" for i in range(2)]
    return LoraAdapter(
        base_model="sentence-transformers/all-MiniLM-L6-v2", r=r, lora_alpha=2.0 * r,
        lora_A={m: torch.randn(r, 384, generator=g) * 0.1 for m in names},
        lora_B={m: torch.randn(1536, r, generator=g) * 0.1 for m in names},
    )


def _p50_ms(fn, early: list[str], late: list[str], rounds: int = 5) -> tuple[float, float]:
    """Median over ids of the best-of-`rounds` latency (ms), early and late ids interleaved in random order.

    Interleaving keeps load from other processes and cache warm-up from favouring one group.
    """
    best = {i: float("inf") for i in early + late}
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for adapter_id in order.permutation(early + late):
            t0 = time.perf_counter()
            fn(str(adapter_id))
            best[str(adapter_id)] = min(best[str(adapter_id)], time.perf_counter() - t0)
    return tuple(round(float(np.median([best[i] for i in group]) * 1e3), 3) for group in (early, late))


def bench_size(n: int, workdir: Path) -> dict[str, float]:
    """Fill a bank with `n` adapters, then time lookups in the live session, after reopening, and on a copy."""
    path = workdir / f"bank-{n}.duckdb"
    result: dict[str, float] = {}

    def measure(prefix: str, fn) -> None:
        result.update(zip((f"{prefix}_early_p50_ms", f"{prefix}_late_p50_ms"), _p50_ms(fn, early, late)))

    with Bank.open(path) as bank:
        ids = [bank.add(_adapter(seed)) for seed in tqdm(range(n), desc=f"fill {n}", unit="adapter")]
        early, late = ids[:20], ids[-20:]
        cur = bank._cur()
        # The live session that just wrote the adapters: what a long-running service sees.
        measure("live_get", bank.get)
        measure("live_scan_by_adapter_id", lambda i: cur.execute(_SCAN, [i]).fetchall())
    with Bank.open(path) as bank:
        cur = bank._cur()
        measure("reopened_get", bank.get)
        measure("reopened_scan_by_adapter_id", lambda i: cur.execute(_SCAN, [i]).fetchall())
    copy = workdir / f"default-{n}.duckdb"
    con = duckdb.connect(str(copy))  # DuckDB defaults: BLOB segments compressed on checkpoint
    con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
    con.execute("CREATE TABLE tensors AS SELECT * FROM src.tensors")
    con.execute("DETACH src")
    con.execute("CHECKPOINT")
    con.close()
    con = duckdb.connect(str(copy))
    measure("default_compression_scan_by_adapter_id", lambda i: con.execute(_SCAN, [i]).fetchall())
    con.close()
    result["file_mb"] = round(path.stat().st_size / 1e6, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Bank lookup latency vs bank size.")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[100, 300, 600])
    p.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bank_lookup.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out: dict[str, object] = {"duckdb": duckdb.__version__, "blobs_per_adapter": 4, "blob_kb": [24.6, 98.3]}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            out[str(n)] = res = bench_size(n, Path(tmp))
            print(n, json.dumps(res))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
