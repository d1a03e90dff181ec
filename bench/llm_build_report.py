"""Per-task time and quality of a generative-suite build (`loragen bank build --provider smollm2-gen`), read back
from the bank it wrote: seconds per task (training, scoring, the rest: cached lower blocks, storing), steps and
val exact match, per family and overall, and the projected time of the whole 186-task suite.

    loragen bank build --provider smollm2-gen --bank B --threads 2
    python bench/llm_build_report.py --bank B --label quiet-2-threads --out bench/results/llm_build_recipe.json

Timings taken on a shared machine are only comparable side by side (note `uptime`'s load with --label).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from loragen.bank.store import Bank
from loragen.bank.tasks import GENERATIVE, get_provider, provider_name

FIELDS = ("seconds", "train_seconds", "score_seconds", "steps", "val_exact_match", "val_loglik")


def summary(rows: list[dict]) -> dict:
    return {k: round(statistics.mean(r[k] for r in rows), 3) for k in FIELDS} | {"tasks": len(rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bank", required=True)
    p.add_argument("--label", default="", help="what the run was (threads, machine load, recipe)")
    p.add_argument("--out", type=Path, default=None, help="add this run to a JSON file (keyed by --label)")
    args = p.parse_args()
    with Bank.open(args.bank) as bank:
        finals = [r for r in bank.adapters(kind="final")]
        tasks = {t.name: t for t in bank.tasks()}
    rows = [{"task": r.task, "family": tasks[r.task].family, **{k: r.metrics[k] for k in FIELDS}}
            for r in finals if r.task in tasks and provider_name(tasks[r.task]) == GENERATIVE]
    if not rows:
        raise SystemExit(f"no {GENERATIVE} task is built in {args.bank}")
    n_suite = len(get_provider(GENERATIVE).tasks())
    overall = summary(rows)
    run = {"label": args.label, "load_avg_1min_at_report": round(os.getloadavg()[0], 2), "overall": overall,
           "projected_suite_minutes": round(overall["seconds"] * n_suite / 60, 1), "suite_tasks": n_suite,
           "families": {f: summary([r for r in rows if r["family"] == f]) for f in sorted({r["family"] for r in rows})},
           "tasks": rows}
    print(json.dumps({k: v for k, v in run.items() if k != "tasks"}, indent=1))
    if args.out:
        runs = json.loads(args.out.read_text()) if args.out.exists() else {}
        runs[args.label or args.bank] = run
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(runs, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
