"""Build every suite task's oracle LoRA into an oracle cache of PEFT directories (for hypernet/meta development).

The format is `bank.tasks.oracle_cache`'s: <out>/<task name, "/" -> "__">/{final,ckpt-<step>}/ (PEFT dirs),
<out>/tasks.json (every TaskRecord plus, once trained, test_accuracy, base_accuracy, steps, seconds) and
<out>/results.jsonl. Resumable: finished tasks are skipped. Runs on one torch thread so the shared machine stays
usable.

    python bench/build_oracle_cache.py --out /work/cache/oracles
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm

from loragen.bank.tasks import BUILTIN, OracleCache, get_provider, task_data
from loragen.bank.train import TrainConfig, train_task_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/work/cache/oracles"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = OracleCache(args.out)
    suite = get_provider(BUILTIN, seed=args.seed)
    specs = suite.tasks()
    order = specs[:]
    random.Random(args.seed).shuffle(order)  # mixed families, so a partial cache is already representative
    order = order[: args.limit] if args.limit else order
    results = cache.recorded()
    cache.write_index(specs, results)
    clf, config = suite.classifier(), TrainConfig()
    todo = [s for s in order if s.name not in results]
    for spec in tqdm(todo, desc="oracles", mininterval=5):
        start = time.perf_counter()
        data = task_data(spec)
        result = train_task_adapter(spec, config, clf, data)
        n = len(spec.labels)
        test_acc = clf.accuracy(data.test, result.final, n)
        base_acc = clf.accuracy(data.test, None, n)
        cache.save_oracle(spec.name, result.final, [(a.metadata["step"], a) for a in result.checkpoints])
        metrics = {"status": "done", "test_accuracy": test_acc, "base_accuracy": base_acc,
                   "steps": result.metrics["steps"], "train_seconds": result.metrics["train_seconds"],
                   "task_seconds": time.perf_counter() - start,
                   "checkpoints": [f"ckpt-{a.metadata['step']}" for a in result.checkpoints]}
        results[spec.name] = metrics
        cache.record(spec.name, metrics)
        cache.write_index(specs, results)
        tqdm.write(f"{spec.name}: test {test_acc:.3f} base {base_acc:.3f} steps {metrics['steps']} "
                   f"{metrics['task_seconds']:.1f}s")
    done = [results[s.name] for s in specs if s.name in results]
    print(json.dumps({"tasks": len(done), "mean_test_accuracy": sum(d["test_accuracy"] for d in done) / len(done),
                      "mean_base_accuracy": sum(d["base_accuracy"] for d in done) / len(done),
                      "mean_task_seconds": sum(d["task_seconds"] for d in done) / len(done)}))


if __name__ == "__main__":
    main()
