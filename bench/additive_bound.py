"""How far can an additive model of the bank's adapters go? The ceiling of the hypernetwork's readout, measured.

Fits ΔW(task) ≈ c_family + Σ_k U[k, class_k] by ridge regression on the in-bank oracles, with each task's classes
given *exactly* (the suite's source keys, not read from text), then scores the predicted adapters on in-bank and
held-out tasks with the suite classifier. With `--subspace-rank R` both the predictions and the oracles are first
projected onto the per-module rank-R right subspace the CVAE generates in (hypernet.space), which shows what that
representation alone costs. Normalised gain = (acc − base) / (oracle − base) on split-averaged accuracies, where
"oracle" is the (projected) oracle.

    .venv/bin/python bench/additive_bound.py --oracles /work/cache/oracles
    .venv/bin/python bench/additive_bound.py --oracles /work/cache/oracles --subspace-rank 16
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import dense_factors
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import BUILTIN, OracleCache, get_provider, task_data

RESULTS = Path(__file__).parent / "results"


def features(task: TaskRecord) -> list[str]:
    return [f"family:{task.family}"] + [f"{k}:{s}" for k, s in enumerate(task.data_ref["sources"])]


def flat_delta(adapter: LoraAdapter) -> torch.Tensor:
    return torch.cat([adapter.delta_weight(m).flatten() for m in adapter.modules])


class Projector:
    """Per module, ΔW -> ΔW V Vᵀ with V the top-R right singular subspace of the training ΔW (R = 0: identity)."""

    def __init__(self, ref: LoraAdapter, y: torch.Tensor, rank: int) -> None:
        self.rank, self.blocks = rank, []
        offset = 0
        for m in ref.modules:
            out_f, in_f = ref.shapes()[m]
            if rank:
                block = y[:, offset : offset + out_f * in_f].view(len(y), out_f, in_f).double()
                _, vecs = torch.linalg.eigh(torch.einsum("noi,noj->ij", block, block))
                self.blocks.append((offset, out_f, in_f, vecs[:, -rank:].float()))
            offset += out_f * in_f

    def __call__(self, vec: torch.Tensor) -> torch.Tensor:
        if not self.rank:
            return vec
        out = vec.clone()
        for offset, out_f, in_f, v in self.blocks:
            d = vec[offset : offset + out_f * in_f].view(out_f, in_f)
            out[offset : offset + out_f * in_f] = (d @ v @ v.T).flatten()
        return out


def to_adapter(ref: LoraAdapter, vec: torch.Tensor, rank: int = 16) -> LoraAdapter:
    """A flat ΔW vector -> a rank-`rank` adapter (truncated SVD per module, zero-padded to `rank`)."""
    lora_A, lora_B, offset = {}, {}, 0
    for m in ref.modules:
        out_f, in_f = ref.shapes()[m]
        b, a, _ = dense_factors(vec[offset : offset + out_f * in_f].view(out_f, in_f), rank)
        k = b.shape[1]
        lora_B[m] = torch.cat([b, b.new_zeros(out_f, rank - k)], 1).contiguous()
        lora_A[m] = torch.cat([a, a.new_zeros(rank - k, in_f)], 0).contiguous()
        offset += out_f * in_f
    return LoraAdapter(ref.base_model, rank, float(rank), lora_A, lora_B)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oracles", type=Path, default=Path("/work/cache/oracles"), help="oracle cache with tasks.json")
    p.add_argument("--ridge", type=float, default=1e-2, help="ridge strength on the one-hot class features")
    p.add_argument("--subspace-rank", type=int, default=0, help="project onto the rank-R subspace first (0: off)")
    p.add_argument("--max-tasks", type=int, default=16, help="tasks scored per split (random, seed 0)")
    p.add_argument("--n-test", type=int, default=64, help="test texts per task")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default: bench/results/additive_bound*.json)")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    cache = OracleCache(args.oracles)
    rows = cache.tasks()
    train = [r for r in rows if r.split == "train"]
    held = [r for r in rows if r.split == "heldout"]
    columns = {c: i for i, c in enumerate(sorted({f for r in rows for f in features(r)}))}

    def design(task: TaskRecord) -> torch.Tensor:
        x = torch.zeros(len(columns))
        x[[columns[f] for f in features(task)]] = 1.0
        return x

    def final(task: TaskRecord) -> LoraAdapter:
        return cache.final(task.name)

    ref = final(train[0])
    x = torch.stack([design(r) for r in train])
    y = torch.stack([flat_delta(final(r)) for r in train])  # (N, ΣΔW) fp32
    gram = (x.T @ x).double() + args.ridge * torch.eye(x.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, (x.T @ y).double()).float()
    residual = sum(float((y[i] - x[i] @ weights).norm() ** 2) for i in range(len(y))) ** 0.5 / float(y.norm())
    project = Projector(ref, y, args.subspace_rank)
    del y
    clf = get_provider(BUILTIN).classifier()
    report = {"command": "python bench/additive_bound.py " + " ".join(sys.argv[1:]),
              "ridge": args.ridge, "subspace_rank": args.subspace_rank, "in_bank_relative_residual": residual,
              "n_in_bank": len(train), "n_heldout": len(held), "splits": {}}
    rng = random.Random(0)
    for split, pool in (("in_bank", train), ("heldout_task", held)):
        sample = rng.sample(pool, min(args.max_tasks, len(pool)))
        acc, base, oracle = [], [], []
        for row in sample:
            test, n = task_data(row).test[: args.n_test], len(row.labels)
            acc.append(clf.accuracy(test, to_adapter(ref, project(design(row) @ weights)), n))
            base.append(clf.accuracy(test, None, n))
            true = final(row)
            oracle.append(clf.accuracy(test, to_adapter(ref, project(flat_delta(true))) if args.subspace_rank
                                       else true, n))
        a, b, o = (sum(v) / len(v) for v in (acc, base, oracle))
        report["splits"][split] = {"n_tasks": len(sample), "additive": a, "base": b, "oracle": o,
                                   "normalised_gain": (a - b) / (o - b)}
        print(split, json.dumps(report["splits"][split]), flush=True)
    report["seconds"] = time.perf_counter() - t0
    out = args.out or RESULTS / f"additive_bound{'_r' + str(args.subspace_rank) if args.subspace_rank else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
