"""Train the ICM-LoRA CVAE on the task suite's in-bank tasks and measure it (normalised gain per split).

Splits (bank.evaluate.splits): in_bank (training tasks, template description), heldout_task (combinations never seen
in training), heldout_paraphrase (in-bank tasks asked with held-out wordings). Conditions: description only,
description + label names, description + 8 labelled examples (from the task's training data). Baselines: the mean
in-bank adapter and retrieval (the in-bank task whose description embedding is nearest, the task itself excluded).
Accuracy is computed with the suite's classifier on each task's test data; base and oracle accuracies come from the
oracle cache. Normalised gain = (acc − base) / (oracle − base) on accuracies averaged over the split's tasks.

    python bench/hypernet_suite.py --oracles /work/cache/oracles --max-epochs 300 \
        --checkpoint-out bench/results/hypernet-ckpt
    python bench/hypernet_suite.py --oracles /work/cache/oracles --checkpoint bench/results/hypernet-ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from loragen.bank.tasks import few_shot_examples

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N_EXAMPLES = 8


def _train(source, args) -> Path:
    from loragen.hypernet.config import HypernetConfig
    from loragen.hypernet.train import snapshot, train_hypernet

    config = HypernetConfig.from_file(args.config) if args.config else HypernetConfig()
    path, _, trainer = train_hypernet(
        snapshot(source, config), config, args.checkpoint_out,
        trainer_kwargs={"max_epochs": args.max_epochs, "max_steps": args.max_steps, "accelerator": "cpu",
                        "devices": 1, "enable_progress_bar": False},
    )
    print(f"trained {trainer.global_step} steps -> {path}")
    return path


class _Evaluator:
    def __init__(self, source, gen, max_tasks: int, seed: int = 0) -> None:
        from loragen.bank.embed import default_encoder
        from loragen.bank.lora.merge import combine
        from loragen.bank.tasks import BUILTIN, get_provider

        self.source, self.gen, self.max_tasks = source, gen, max_tasks
        self.clf = get_provider(BUILTIN).classifier()
        tasks = source.tasks()
        self.train_tasks = sorted((t for t in tasks if t.split == "train"), key=lambda t: t.name)
        self.heldout = sorted((t for t in tasks if t.split == "heldout"), key=lambda t: t.name)
        self.finals = {t.name: source.adapters(t.name)[0][0] for t in self.train_tasks}
        self.mean = combine(list(self.finals.values()), [1.0 / len(self.finals)] * len(self.finals),
                            method="linear")
        enc = default_encoder()
        self.enc = enc
        self.train_vecs = enc.encode([t.description for t in self.train_tasks])  # (N, D)
        self.seed = seed

    def _retrieve(self, task, text: str):
        q = self.enc.encode([text])[0]
        order = np.argsort(-(self.train_vecs @ q))
        for j in order:
            if self.train_tasks[j].name != task.name:
                return self.finals[self.train_tasks[j].name]

    def _acc(self, task, adapter) -> float:
        from loragen.bank.tasks import task_data

        return self.clf.accuracy(task_data(task).test, adapter, len(task.labels))

    def _cvae(self, task, text: str, labels=None, examples=None):
        return self.gen.generate(text, labels=labels, examples=examples)[0]

    def run_split(self, split: str) -> dict:
        tasks = self.train_tasks if split != "heldout_task" else self.heldout
        # One fixed sample per pool: in_bank and heldout_paraphrase score the same tasks, so the paraphrase gap
        # is measured on equal footing.
        rng = random.Random(f"{self.seed}-{split == 'heldout_task'}")
        tasks = sorted(rng.sample(tasks, min(self.max_tasks, len(tasks))), key=lambda t: t.name)
        rows = []
        for task in tqdm(tasks, desc=split):
            m = self.source.metrics(task.name)
            texts = list(task.heldout_paraphrases) if split == "heldout_paraphrase" else [task.description]
            row = {"task": task.name, "base": m["base_accuracy"], "oracle": m["test_accuracy"], "methods": {}}
            for text in texts:
                methods = {
                    "cvae": lambda: self._cvae(task, text),
                    "cvae+labels": lambda: self._cvae(task, text, labels=task.labels),
                }
                if split != "heldout_paraphrase":  # examples and baselines do not depend on the wording
                    examples = few_shot_examples(task, N_EXAMPLES)
                    methods["cvae+8examples"] = lambda: self._cvae(task, text, examples=examples)
                    methods["retrieval"] = lambda: self._retrieve(task, text)
                    methods["mean"] = lambda: self.mean
                for name, make in methods.items():
                    row["methods"].setdefault(name, []).append(self._acc(task, make()))
            if split == "heldout_paraphrase":  # the template wording on the same tasks, for the gap
                row["methods"]["cvae(template)"] = [self._acc(task, self._cvae(task, task.description))]
            row["methods"] = {k: float(np.mean(v)) for k, v in row["methods"].items()}
            rows.append(row)
        return {"tasks": rows, "summary": _summary(rows)}


def _summary(rows: list[dict]) -> dict:
    base = float(np.mean([r["base"] for r in rows]))
    oracle = float(np.mean([r["oracle"] for r in rows]))
    out = {"n_tasks": len(rows), "base": {"accuracy": base}, "oracle": {"accuracy": oracle, "normalised_gain": 1.0}}
    for name in rows[0]["methods"]:
        acc = float(np.mean([r["methods"][name] for r in rows]))
        out[name] = {"accuracy": acc, "normalised_gain": (acc - base) / max(oracle - base, 1e-9)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oracles", type=Path, default=Path("/work/cache/oracles"), help="oracle cache directory")
    parser.add_argument("--checkpoint", type=Path, default=None, help="evaluate this checkpoint (no training)")
    parser.add_argument("--checkpoint-out", type=Path, default=Path("bench/results/hypernet-ckpt"))
    parser.add_argument("--config", type=Path, default=Path("hypernet/configs/suite.yaml"),
                        help="HypernetConfig JSON or YAML")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=2400)
    parser.add_argument("--max-tasks", type=int, default=40, help="tasks evaluated per split (random, seed 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--splits", nargs="+", default=["in_bank", "heldout_task", "heldout_paraphrase"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/hypernet_suite.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from loragen.bank.tasks import OracleCacheSource
    from loragen.hypernet.generate import CVAEGenerator

    source = OracleCacheSource(args.oracles)
    t0 = time.perf_counter()
    ckpt = args.checkpoint or _train(source, args)
    train_s = time.perf_counter() - t0
    gen = CVAEGenerator.from_checkpoint(ckpt)
    ev = _Evaluator(source, gen, args.max_tasks)
    report = {"oracle_cache": str(args.oracles), "checkpoint": str(ckpt), "train_seconds": train_s,
              "n_in_bank_tasks": len(ev.train_tasks), "n_heldout_tasks": len(ev.heldout),
              "command": " ".join(sys.argv), "splits": {}}
    saved = json.loads((Path(ckpt) / "config.json").read_text())
    # The run's full config travels with its numbers (checkpoints are gitignored; --config may name a scratch file).
    report["meta"], report["hypernet_config"] = saved["extra"], saved["hypernet"]
    for split in args.splits:
        report["splits"][split] = ev.run_split(split)
        print(split, json.dumps(report["splits"][split]["summary"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
