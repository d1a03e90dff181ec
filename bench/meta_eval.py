"""ABMLL on the real suite: accuracy and normalised gain, calibration (ECE) against deterministic adapters and CVAE
samples, AUROC of the calibrated confidence for wrong predictions, and in- vs out-of-distribution descriptions.

Writes bench/results/meta.json, the reliability diagram bench/results/meta_reliability.png, and the fitted
calibrator (JSON) next to the ABMLL checkpoint.

Usage::

    python bench/meta_eval.py --checkpoint runs/abmll --oracles /work/cache/oracles \
        [--bank bank.duckdb] [--hypernet runs/cvae] [--samples 4] [--n-test 64] [--max-in-bank 24]

Protocol: in-bank tasks use their own description with the task itself excluded from retrieval and from the bank
neighbours (leave-one-out); held-out tasks are split in two fixed halves: the calibrator is fit on the first
half's validation split, ECE/AUROC of the calibrated confidence are measured on the second half's test split.
In-distribution descriptions for the OOD check are the second half's descriptions and paraphrases (never trained
on, like the bank's tasks); the out-of-distribution ones are meta/data/ood_descriptions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from loragen.bank.generator import GenerationRequest  # noqa: E402
from loragen.bank.lora.adapter import LoraAdapter  # noqa: E402
from loragen.bank.evaluate.calibration import auroc, expected_calibration_error  # noqa: E402
from loragen.meta.calibration import LogisticCalibrator, reliability_diagram  # noqa: E402
from loragen.meta.score import FEATURES, Scorer, predictive_stats  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="ABMLL checkpoint directory")
    p.add_argument("--oracles", type=Path, default=None, help="PEFT oracle directory with tasks.json")
    p.add_argument("--bank", type=Path, default=None, help="bank with the in-bank oracles (else one is built)")
    p.add_argument("--hypernet", type=Path, default=None, help="CVAE checkpoint for the comparison (optional)")
    p.add_argument("--samples", type=int, default=4, help="posterior samples S per task")
    p.add_argument("--n-test", type=int, default=48, help="test examples per task")
    p.add_argument("--n-val", type=int, default=48, help="validation examples per calibration task")
    p.add_argument("--max-in-bank", type=int, default=16, help="in-bank tasks evaluated (evenly spread)")
    p.add_argument("--max-heldout", type=int, default=None, help="held-out tasks evaluated (default all)")
    p.add_argument("--ood-paraphrases", action="store_true",
                   help="also use the held-out tasks' paraphrases as in-distribution descriptions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 avoids oversubscription when the cores are shared)")
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "meta.json")
    p.add_argument("--png", type=Path, default=RESULTS / "meta_reliability.png")
    return p.parse_args(argv)


def spread(items: list, n: int | None) -> list:
    if not n or len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


# ---- sources -----------------------------------------------------------------------------------------------
def load_oracles(args, specs) -> dict[str, LoraAdapter]:
    from loragen.bank.tasks import BankSource, OracleCacheSource
    from loragen.meta.data import known_adapters

    if args.oracles is not None:
        return known_adapters(OracleCacheSource(args.oracles), specs)
    if args.bank is not None:
        from loragen.bank.store import Bank

        with Bank.open(args.bank) as bank:
            return known_adapters(BankSource(bank), specs)
    return {}


def open_bank(args, specs, oracles, workdir: Path):
    """The bank used for retrieval and the OOD signals: given, or built from the in-bank oracles."""
    from loragen.bank.store import Bank

    if args.bank is not None:
        return Bank.open(args.bank)
    bank = Bank.open(workdir / "bank.duckdb")
    in_bank = [t for t in specs if t.split == "train"]
    bank.add_tasks(in_bank)
    for t in tqdm(in_bank, desc="bank from oracles", leave=False):
        if t.name in oracles:
            bank.add(oracles[t.name], task=t.name, description=t.description, source="oracle")
    return bank


# ---- evaluation of one task ----------------------------------------------------------------------------------
class Methods:
    """Every method's class probabilities (S, n, K) for one task's texts."""

    def __init__(self, clf, bank, gen, cvae, oracles, samples: int, seed: int) -> None:
        self.clf, self.bank, self.gen, self.cvae, self.oracles = clf, bank, gen, cvae, oracles
        self.samples, self.seed = samples, seed

    def probs(self, adapters, texts, k) -> torch.Tensor:
        out = []
        for a in adapters:
            out.append(torch.softmax(self.clf.logits(texts, a, k).float(), -1))
        return torch.stack(out)  # (S, n, K)

    def adapters(self, task, description: str, exclude: tuple[str, ...]) -> dict[str, list]:
        found: dict[str, list] = {"base": [None]}
        if task.name in self.oracles:
            found["oracle"] = [self.oracles[task.name]]
        hits = self.bank.search_text(description, k=1, exclude_tasks=exclude)
        if hits:
            found["retrieval"] = [self.bank.get(hits[0].id)]
        post = self.gen.posterior(GenerationRequest(description, n_samples=self.samples, seed=self.seed))
        found["abmll_mean"], found["abmll"] = [post.mean], post.samples
        if self.cvae is not None:
            req = GenerationRequest(description, n_samples=self.samples, seed=self.seed,
                                    base_model=post.mean.base_model)
            found["cvae"] = self.cvae.generate(req)
            found["cvae_mean"] = self.cvae.generate(GenerationRequest(description, seed=self.seed,
                                                                      base_model=post.mean.base_model))
        return found


def evaluate(tasks, split, methods: Methods, scorer: Scorer, n_test: int, n_val: int, calib_names: set[str]):
    """Per task: accuracy per method; per input: max-prob/correct per method and the scorer's features."""
    from loragen.bank.tasks import task_data

    rows, per_input = [], {"features": [], "correct": [], "task": [], "part": []}
    curves: dict[str, tuple[list, list]] = {}
    for task in tqdm(tasks, desc=split):
        k = len(task.labels)
        exclude = (task.name,) if split == "in_bank" else ()
        data = task_data(task)
        test = data.test[:n_test]
        texts, labels = [t for t, _ in test], torch.tensor([y for _, y in test])
        found = methods.adapters(task, task.description, exclude)
        row = {"task": task.name, "split": split}
        kept = {}
        for name, adapters in found.items():
            probs = methods.probs(adapters, texts, k) if adapters[0] is not None else \
                torch.softmax(methods.clf.logits(texts, None, k).float(), -1)[None]
            kept[name] = probs
            stats = predictive_stats(probs)
            correct = (stats["mean_probs"].argmax(-1) == labels).numpy()
            row[name] = float(correct.mean())
            conf, corr = curves.setdefault(name, ([], []))
            conf += stats["max_prob"].tolist()
            corr += correct.astype(int).tolist()
        rows.append(row)
        if split != "heldout_task":
            continue
        parts = [("test", test)] + ([("val", data.val[:n_val])] if task.name in calib_names else [])
        for part, ex in parts:
            ptexts, plabels = [t for t, _ in ex], torch.tensor([y for _, y in ex])
            x, stats, _ = scorer.features(task.description, found["abmll"], ptexts, exclude, k,
                                          probs=kept["abmll"] if part == "test" else None)
            per_input["features"].append(x)
            per_input["correct"] += (stats["mean_probs"].argmax(-1) == plabels).int().tolist()
            per_input["task"] += [task.name] * len(ex)
            per_input["part"] += [part] * len(ex)
    return rows, curves, per_input


def aggregate(rows: list[dict]) -> dict:
    """Accuracy per method over the split, and normalised gain on tasks with an oracle (aggregated accuracies)."""
    methods = sorted({k for r in rows for k in r} - {"task", "split"})
    out = {}
    with_oracle = [r for r in rows if "oracle" in r]
    base_o = np.mean([r["base"] for r in with_oracle]) if with_oracle else None
    oracle = np.mean([r["oracle"] for r in with_oracle]) if with_oracle else None
    for m in methods:
        have = [r for r in rows if m in r]
        entry = {"accuracy": float(np.mean([r[m] for r in have])), "n_tasks": len(have)}
        both = [r for r in with_oracle if m in r]
        if both and oracle is not None and oracle - base_o > 1e-6:
            acc = np.mean([r[m] for r in both])
            entry["normalised_gain"] = float((acc - base_o) / (oracle - base_o))
        out[m] = entry
    return out


# ---- calibration and OOD ------------------------------------------------------------------------------------
def fit_and_measure_calibration(per_input, args) -> tuple[LogisticCalibrator, dict, tuple]:
    x = np.concatenate(per_input["features"])
    y = np.asarray(per_input["correct"])
    part = np.asarray(per_input["part"])
    fit = part == "val"
    test = (part == "test") & ~np.isin(per_input["task"], list(CALIB_NAMES))
    cal = LogisticCalibrator.fit(x[fit], y[fit], FEATURES, monotone=("description_similarity", "weight_similarity"))
    cal.save(args.checkpoint / "calibrator.json")
    conf = cal(x[test])
    raw = x[test][:, FEATURES.index("max_prob")]
    wrong = 1 - y[test]
    res = {
        "fit_inputs": int(fit.sum()), "eval_inputs": int(test.sum()),
        "ece_calibrated": expected_calibration_error(conf, y[test]),
        "ece_raw_abmll_maxprob": expected_calibration_error(raw, y[test]),
        "auroc_wrong_by_low_confidence": auroc(1 - conf, wrong) if 0 < wrong.sum() < len(wrong) else None,
        "auroc_wrong_by_low_raw_maxprob": auroc(1 - raw, wrong) if 0 < wrong.sum() < len(wrong) else None,
        "accuracy_eval_half": float(y[test].mean()),
        "calibrator": {"features": list(cal.features), "weight": cal.weight, "bias": cal.bias},
    }
    return cal, res, (conf, y[test])


def ood_check(gen, scorer: Scorer, in_dist: list[str], ood: list[str], samples: int, seed: int) -> dict:
    conf, sims, mis, labels = [], [], [], []
    for text, is_in in tqdm([(d, 1) for d in in_dist] + [(d, 0) for d in ood], desc="ood"):
        post = gen.posterior(GenerationRequest(text, n_samples=samples, seed=seed))
        s = scorer.score(text, post.samples)
        conf.append(s.confidence)
        sims.append(s.description_similarity)
        mis.append(s.mutual_information)
        labels.append(is_in)
    labels = np.asarray(labels)
    return {
        "n_in_distribution": int(labels.sum()), "n_out_of_distribution": int((1 - labels).sum()),
        "auroc_in_vs_ood_by_confidence": auroc(conf, labels),
        "auroc_by_description_similarity_alone": auroc(sims, labels),
        "auroc_by_low_mutual_information_alone": auroc(-np.asarray(mis), labels),
        "mean_confidence_in": float(np.mean(np.asarray(conf)[labels == 1])),
        "mean_confidence_ood": float(np.mean(np.asarray(conf)[labels == 0])),
    }


CALIB_NAMES: set[str] = set()


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    from loragen.bank.embed import TextEncoder
    from loragen.bank.evaluate import split_tasks
    from loragen.bank.tasks import BUILTIN, get_provider, task_data
    from loragen.meta.condition import SlotDescriptionEncoder
    from loragen.meta.data import ood_descriptions
    from loragen.meta.generate import ABMLLGenerator

    start = time.perf_counter()
    suite = get_provider(BUILTIN, seed=0)
    specs = suite.tasks()
    clf = suite.classifier()
    gen = ABMLLGenerator.from_checkpoint(args.checkpoint, classifier=clf)
    gen._encode = SlotDescriptionEncoder(TextEncoder().encode, gen.model.config.max_slots)
    oracles = load_oracles(args, specs)
    cvae = None
    if args.hypernet is not None:
        from loragen.hypernet.generate import CVAEGenerator

        cvae = CVAEGenerator.from_checkpoint(args.hypernet)
    workdir = Path(tempfile.mkdtemp(prefix="meta-eval-"))
    bank = open_bank(args, specs, oracles, workdir)
    in_bank = spread(split_tasks(specs, "in_bank"), args.max_in_bank)
    held = spread(split_tasks(specs, "heldout_task"), args.max_heldout)
    CALIB_NAMES.update(t.name for t in held[0::2])
    rng = random.Random(args.seed)
    probe_tasks = rng.sample(split_tasks(specs, "in_bank"), 16)
    probe = [t for task in probe_tasks for t, _ in task_data(task).test[:1]]  # 16 texts across tasks
    scorer = Scorer(clf, bank=bank, probe_texts=probe)
    methods = Methods(clf, bank, gen, cvae, oracles, args.samples, args.seed)

    rows_in, curves_in, _ = evaluate(in_bank, "in_bank", methods, scorer, args.n_test, args.n_val, CALIB_NAMES)
    rows_held, curves_held, per_input = evaluate(held, "heldout_task", methods, scorer, args.n_test, args.n_val,
                                                 CALIB_NAMES)
    ece = {m: expected_calibration_error(*curves_held[m]) for m in curves_held}
    cal, calib, (conf, correct) = fit_and_measure_calibration(per_input, args)
    scorer.calibrator = cal
    plot = {m: curves_held[m] for m in ("abmll", "abmll_mean", "oracle", "retrieval", "cvae") if m in curves_held}
    plot["abmll (calibrated confidence)"] = (conf.tolist(), correct.tolist())
    reliability_diagram(plot, args.png)
    in_dist = [d for t in held if t.name not in CALIB_NAMES
               for d in ((t.description, *t.paraphrases) if args.ood_paraphrases else (t.description,))]
    ood = ood_check(gen, scorer, in_dist, ood_descriptions(), args.samples, args.seed)
    result = {
        "command": "python bench/meta_eval.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()}-core CPU, torch {torch.__version__}",
        "checkpoint": str(args.checkpoint), "samples": args.samples, "n_test": args.n_test,
        "n_oracles": len(oracles),
        "splits": {"in_bank": aggregate(rows_in), "heldout_task": aggregate(rows_held)},
        "ece_heldout_test": ece,
        "calibrated_confidence": calib,
        "ood": ood,
        "per_task": rows_in + rows_held,
        "seconds": time.perf_counter() - start,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    bank.close()
    summary = {k: result[k] for k in ("splits", "ece_heldout_test", "ood")}
    summary["calibrated_confidence"] = {k: v for k, v in calib.items() if k != "calibrator"}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
