"""`loragen bank tasks import|list`: a user's own tasks and their examples, from a task manifest into the bank.

Hooked into `loragen bank` by `api.commands.bank` (`add_parser(bank_subparsers)`). The manifest format is
documented in `loragen.bank.tasks.manifest`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from loragen.api.commands._options import add_bank

EPILOG = """manifest (YAML; or JSONL, one task object a line):
  tasks:
    - name: reviews/sentiment
      description: label 1 if the review is positive, 0 if it is negative
      labels: [negative, positive]          # classification; omit for input/output (generation) tasks
      base_model: ./my-encoder              # optional; relative to the manifest
      data: data/sentiment.jsonl            # {"text", "label"} or {"input", "output"} lines, optional "split"

examples:
  loragen bank tasks import tasks.yaml --bank bank.duckdb
  loragen bank tasks list
  loragen bank tasks list --json
"""


def add_parser(bank_sub: argparse._SubParsersAction) -> None:
    p = bank_sub.add_parser(
        "tasks",
        help="import your own tasks and their data (a manifest), list the bank's tasks",
        description="A user's own tasks: their descriptions and examples, stored in the bank (train oracles for "
        "them with `loragen bank train`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="tasks_command", metavar="TASKS_COMMAND", required=True)
    imp = sub.add_parser("import", help="import (or re-import) the tasks of a manifest with their examples",
                         description="Check a task manifest and its data files (every problem is reported at "
                         "once), then store each task with its examples, one transaction per task. Re-importing a "
                         "task replaces its record and examples.", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("manifest", type=Path, help="a .yaml/.yml or .jsonl task manifest")
    add_bank(imp)
    imp.set_defaults(func=run_import)
    lst = sub.add_parser("list", help="list the bank's tasks: kind, split, examples per split, final adapters",
                         description="List the bank's tasks with their kind, split, stored examples per split and "
                         "how many final adapters (oracles) each has.")
    lst.add_argument("--json", action="store_true", help="print one JSON object per task")
    add_bank(lst)
    lst.set_defaults(func=run_list)


def run_import(args: argparse.Namespace) -> int:
    from loragen.bank.store import Bank
    from loragen.bank.tasks.manifest import load_manifest

    tasks = load_manifest(args.manifest)  # every problem is reported before anything is written
    with Bank.open(args.bank) as bank:
        finals = _final_counts(bank)
        for task in tasks:
            d = task.data
            bank.put_task(task.record, d.train, d.val, d.test)
            note = ""
            if finals.get(task.record.name):
                note = (f"\t(has {finals[task.record.name]} final adapter(s) from before; retrain with `loragen bank "
                        f"train --tasks {task.record.name} --force`)")
            print(f"{task.record.name}\t{task.kind}\t{len(d.train)}/{len(d.val)}/{len(d.test)} train/val/test{note}")
    return 0


def _final_counts(bank) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in bank.adapters(kind="final"):
        if record.task:
            counts[record.task] = counts.get(record.task, 0) + 1
    return counts


def run_list(args: argparse.Namespace) -> int:
    from loragen.bank.store import Bank
    from loragen.bank.tasks.manifest import task_kind

    with Bank.open(args.bank) as bank:
        finals, examples = _final_counts(bank), bank.task_example_counts()
        rows = [{"name": t.name, "kind": task_kind(t), "split": t.split,
                 "examples": examples.get(t.name, {"train": 0, "val": 0, "test": 0}),
                 "final_adapters": finals.get(t.name, 0)} for t in bank.tasks()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'kind':<14}  {'split':<7}  {'train':>5}  {'val':>5}  {'test':>5}  final")
    for r in rows:
        n = r["examples"]
        print(f"{r['name']:<{width}}  {r['kind']:<14}  {r['split']:<7}  {n['train']:>5}  {n['val']:>5}  "
              f"{n['test']:>5}  {r['final_adapters']}")
    return 0
