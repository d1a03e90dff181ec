"""Build every suite task's oracle LoRA into a dev cache of PEFT directories (for hypernet/meta development).

Layout: <out>/<task name, "/" -> "__">/{final,ckpt-<step>}/ (PEFT dirs) and <out>/tasks.json (every TaskRecord as
JSON plus, once trained, test_accuracy, base_accuracy, steps, seconds). Resumable: finished tasks are skipped.
Runs on one torch thread so the shared machine stays usable.

    python bench/build_oracle_cache.py --out /work/cache/oracles
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from loragen.bank.lora.peft_format import save_peft
from loragen.bank.suite import SuiteClassifier, load_suite, task_data
from loragen.bank.suite.train import TrainConfig, train_task_adapter


def task_dir(out: Path, name: str) -> Path:
    return out / name.replace("/", "__")


def write_index(out: Path, specs, results: dict) -> None:
    rows = [{**asdict(s), **results.get(s.name, {"status": "pending"})} for s in specs]
    tmp = out / "tasks.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    os.replace(tmp, out / "tasks.json")  # atomic: readers never see a half-written index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/work/cache/oracles"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    specs = load_suite(args.seed)
    order = specs[:]
    random.Random(args.seed).shuffle(order)  # mixed families, so a partial cache is already representative
    order = order[: args.limit] if args.limit else order
    log = args.out / "results.jsonl"
    results = {}
    if log.exists():
        results = {r["name"]: r["metrics"] for r in map(json.loads, log.read_text().splitlines())}
    write_index(args.out, specs, results)
    clf, config = SuiteClassifier(), TrainConfig()
    todo = [s for s in order if s.name not in results]
    for spec in tqdm(todo, desc="oracles", mininterval=5):
        start = time.perf_counter()
        data = task_data(spec)
        result = train_task_adapter(spec, config, clf, data)
        n = len(spec.labels)
        test_acc = clf.accuracy(data.test, result.final, n)
        base_acc = clf.accuracy(data.test, None, n)
        root = task_dir(args.out, spec.name)
        for adapter in result.checkpoints:
            save_peft(adapter, root / f"ckpt-{adapter.metadata['step']}")
        save_peft(result.final, root / "final")
        metrics = {"status": "done", "test_accuracy": test_acc, "base_accuracy": base_acc,
                   "steps": result.metrics["steps"], "train_seconds": result.metrics["train_seconds"],
                   "task_seconds": time.perf_counter() - start, "dir": str(root),
                   "checkpoints": [f"ckpt-{a.metadata['step']}" for a in result.checkpoints]}
        results[spec.name] = metrics
        with log.open("a") as f:
            f.write(json.dumps({"name": spec.name, "metrics": metrics}) + "\n")
        write_index(args.out, specs, results)
        tqdm.write(f"{spec.name}: test {test_acc:.3f} base {base_acc:.3f} steps {metrics['steps']} "
                   f"{metrics['task_seconds']:.1f}s")
    done = [results[s.name] for s in specs if s.name in results]
    print(json.dumps({"tasks": len(done), "mean_test_accuracy": sum(d["test_accuracy"] for d in done) / len(done),
                      "mean_base_accuracy": sum(d["base_accuracy"] for d in done) / len(done),
                      "mean_task_seconds": sum(d["task_seconds"] for d in done) / len(done)}))


if __name__ == "__main__":
    main()
