"""`loragen bank build`: train the built-in task suite (or a subset) into the bank, resumably.

Hooked into `loragen bank` by `api.commands.bank` (`add_parser(bank_subparsers)`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from loragen.api.commands._options import add_bank, add_no_progress, add_seed, add_threads, positive_int

EPILOG = """examples:
  loragen bank build                         # the whole suite (~316 tasks) into the default bank
  loragen bank build --tasks 12 --bank ./b.duckdb
  loragen bank build --family lang --split train
  loragen bank build --import-dir /work/cache/oracles   # reuse pre-trained PEFT dirs, train the rest
"""


def add_parser(bank_sub: argparse._SubParsersAction) -> None:
    p = bank_sub.add_parser(
        "build",
        help="train the built-in task suite into the bank (resumable)",
        description="Train each suite task's oracle LoRA (Lightning recipe) and store task, final adapter, "
        "trajectory checkpoints and metrics in the bank. Tasks already in the bank are skipped.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bank(p)
    add_seed(p, "suite seed (which tasks, data and paraphrases)", default=0)
    p.add_argument("--tasks", type=positive_int, default=None, metavar="N",
                   help="build only the first N tasks (of the filtered list)")
    p.add_argument("--family", action="append", choices=["lang", "entity", "locale"], default=None,
                   help="only these task families (repeatable)")
    p.add_argument("--split", choices=["train", "heldout"], default=None, help="only in-bank or held-out tasks")
    p.add_argument("--name", action="append", default=None, help="only the task of this name (repeatable)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="most training steps per task (recipe default 40)")
    p.add_argument("--rank", type=positive_int, default=None, metavar="R", help="LoRA rank (recipe default 4)")
    add_threads(p)
    p.add_argument("--import-dir", type=Path, default=None,
                   help="take oracles from PEFT dirs <dir>/<task, '/'->'__'>/{final,ckpt-N} where present")
    p.add_argument("--import-only", action="store_true",
                   help="with --import-dir: build only the tasks found there (train nothing)")
    add_no_progress(p)
    p.set_defaults(func=run)


def select_tasks(args: argparse.Namespace) -> list:
    """The suite tasks the arguments ask for, in suite order."""
    from loragen.bank.errors import NotFoundError
    from loragen.bank.tasks import BUILTIN, get_provider

    tasks = get_provider(BUILTIN, seed=args.seed).tasks()
    if args.family:
        tasks = [t for t in tasks if t.family in args.family]
    if args.split:
        tasks = [t for t in tasks if t.split == args.split]
    if args.name:
        known = {t.name for t in tasks}
        missing = [n for n in args.name if n not in known]
        if missing:
            raise NotFoundError(f"unknown task name(s) {missing}; see `loragen bank build --help` for the filters")
        tasks = [t for t in tasks if t.name in args.name]
    return tasks[: args.tasks] if args.tasks else tasks


def run(args: argparse.Namespace) -> int:
    import torch

    from loragen.bank.errors import NotFoundError
    from loragen.bank.store import Bank
    from loragen.bank.tasks import OracleCache
    from loragen.bank.train import TrainConfig, build_bank, imported_oracles, trained_oracles

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in (("steps", args.steps), ("r", args.rank)) if v is not None}
    if "steps" in overrides:
        overrides["min_steps"] = min(TrainConfig.min_steps, overrides["steps"])
        overrides["num_checkpoints"] = min(TrainConfig.num_checkpoints, overrides["min_steps"] - 1)
    config = TrainConfig(**overrides)
    oracle = trained_oracles(config)
    if args.import_dir:
        oracle = imported_oracles(args.import_dir, fallback=oracle)
    tasks = select_tasks(args)
    if args.import_only:
        if not args.import_dir:
            raise NotFoundError("--import-only needs --import-dir DIR")
        cache = OracleCache(args.import_dir)
        tasks = [t for t in tasks if cache.has_final(t.name)]
    with Bank.open(args.bank) as bank:
        summary = build_bank(bank, tasks, oracle=oracle, progress=not args.no_progress)
        if summary.built:
            bank.reindex()
    print(json.dumps(summary.as_dict(), indent=2))
    return 0
