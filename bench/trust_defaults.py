"""The trust score `loragen generate "..."` prints with only the defaults, scored on the calibration split.

Without a bank or `--inputs`, `generate` computes the trust features against the built-in suite (the nearest suite
task's description and inputs, `api.suite_neighbours`), with the other shipped generator as its peer and no extra
samples. This runs the stored trust files (`loragen trust fit`'s) on the calibration cases twice, side by side:
features as calibration computes them (the bank, 16 unlabeled inputs, every method as a peer) and as the default
CLI does. Cases of the trust model's own calibration tasks are predicted leave-task-out (`api.trust_check`).

    python bench/trust_defaults.py --bank SUITE_BANK --method cvae=CKPT/hypernet --method abmll=CKPT/meta \\
        --split heldout_task --split heldout_wording --max-tasks 8 --out bench/results/trust_defaults.json

Writes {"bank_and_inputs": section, "defaults": section, "defaults_without_suite": section} (sections as `loragen
eval --trust` writes them; the last is the defaults' cases without the features the built-in suite gives, what
`generate` printed before it used the suite) and a PNG per mode next to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


SUITE_FEATURES = ("bank_similarity", "entropy_probe", "max_prob_probe", "disagreement", "mutual_information")


def without_suite(section: dict) -> dict:
    """The `defaults` section re-predicted without the features the built-in suite's neighbours give (the same
    cases and measured accuracies; the same stored trust models, leave-task-out)."""
    from loragen.api.trust import load_trust
    from loragen.api.trust_check import trust_entry

    out = {**section, "methods": {}}
    for row, entry in section["methods"].items():
        if not entry.get("calibrated") or not entry.get("cases"):
            out["methods"][row] = entry
            continue
        records = [{**c, "features": {k: (None if k in SUITE_FEATURES else v) for k, v in c["features"].items()}}
                   for c in entry["cases"]]
        path = Path(entry["trust_file"])
        out["methods"][row] = trust_entry(load_trust(path), path, records)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bank", type=Path, required=True, help="the bank the trust files were fitted on")
    parser.add_argument("--method", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="cvae / abmll with the checkpoint holding its trust.json (repeatable)")
    parser.add_argument("--split", action="append", default=None, help="calibration split (repeatable)")
    parser.add_argument("--max-tasks", type=int, default=8)
    parser.add_argument("--max-examples", type=int, default=None, help="default: as `loragen trust fit`")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/trust_defaults.json"))
    args = parser.parse_args(argv)

    import torch

    from loragen.api.generators import build_methods
    from loragen.api.trust_check import check_trust, trust_table
    from loragen.api.trust_fit import CONDITIONS, bank_scorer, eval_cases
    from loragen.bank.store import Bank

    if args.threads:
        torch.set_num_threads(args.threads)
    splits = args.split or ["heldout_task", "heldout_wording"]
    report: dict = {"command": "python bench/trust_defaults.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": "CPU", "threads": torch.get_num_threads()}
    with Bank.open(args.bank) as bank:
        cases = eval_cases(bank, splits, CONDITIONS, args.max_tasks, kind="classification")
        finals = {r.task: r.id for r in bank.adapters(kind="final")}
        scorer, classifier = bank_scorer(bank, "classification", finals, cases[0].task)
        generators, checkpoints = build_methods(args.method, bank, classifier)
        for mode, defaults in (("bank_and_inputs", False), ("defaults", True)):
            start = time.perf_counter()
            plot = args.out.with_name(f"{args.out.stem}_{mode}.png")
            section = check_trust(bank, generators, checkpoints, cases, scorer, max_examples=args.max_examples,
                                  plot_path=plot, defaults=defaults)
            section["seconds"] = round(time.perf_counter() - start, 1)
            report[mode] = section
            print(f"\n{mode}:\n{trust_table(section)}")
        report["defaults_without_suite"] = without_suite(report["defaults"])
        print(f"\ndefaults_without_suite:\n{trust_table(report['defaults_without_suite'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
