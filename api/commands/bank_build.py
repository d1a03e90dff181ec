"""`loragen bank build`: train a built-in task suite (or a subset) into the bank, resumably.

`--provider` picks the suite: "minilm-suite" (classification over MiniLM, the default) or "smollm2-gen" (the
generative suite over SmolLM2, trained and scored like `loragen bank train` trains a user's generation tasks,
with the suite's recipe file unless --config names another).

Hooked into `loragen bank` by `api.commands.bank` (`add_parser(bank_subparsers)`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from loragen.api.commands._options import (
    add_bank,
    add_base_model,
    add_device,
    add_no_progress,
    add_seed,
    add_threads,
    apply_threads,
    positive_int,
)

EPILOG = """examples:
  loragen bank build                         # the whole suite (~316 tasks) into the default bank
  loragen bank build --tasks 12 --bank ./b.duckdb
  loragen bank build --family lang --split train
  loragen bank build --import-dir /work/cache/oracles   # reuse pre-trained PEFT dirs, train the rest
  loragen bank build --provider smollm2-gen --threads 2   # the generative suite (186 tasks) over SmolLM2
  loragen bank build --provider smollm2-gen --family date-name --config my-recipe.yaml
"""


def add_parser(bank_sub: argparse._SubParsersAction) -> None:
    p = bank_sub.add_parser(
        "build",
        help="train a built-in task suite into the bank (resumable)",
        description="Train each suite task's oracle LoRA (Lightning recipe) and store task, final adapter, "
        "trajectory checkpoints and metrics in the bank. Tasks whose final adapter is in the bank are skipped, so "
        "an interrupted build resumes where it stopped.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bank(p)
    p.add_argument("--provider", choices=["minilm-suite", "smollm2-gen"], default="minilm-suite",
                   help="the suite: minilm-suite (classification over MiniLM) or smollm2-gen (generation over "
                   "SmolLM2); default minilm-suite")
    add_seed(p, "suite seed (which tasks, data and paraphrases)", default=0)
    p.add_argument("--tasks", type=positive_int, default=None, metavar="N",
                   help="build only the first N tasks (of the filtered list)")
    p.add_argument("--family", action="append", default=None,
                   help="only these task families (repeatable; minilm-suite: lang, entity, locale; smollm2-gen: "
                   "date-name, date-format, number-words, number-format, person-name, word-list)")
    p.add_argument("--split", choices=["train", "heldout"], default=None, help="only in-bank or held-out tasks")
    p.add_argument("--name", action="append", default=None, help="only the task of this name (repeatable)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="most training steps per task (default: the recipe's, 40 for both suites)")
    p.add_argument("--rank", type=positive_int, default=None, metavar="R",
                   help="LoRA rank (default: the recipe's; minilm-suite 4, smollm2-gen 8)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="YAML or JSON recipe of TrainConfig fields (default: the suite's own; smollm2-gen ships "
                   "bank/suite_llm/recipe.yaml); --steps and --rank override it")
    add_base_model(p, "smollm2-gen: train over this causal LM instead", "each task's own (SmolLM2)")
    add_device(p)
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
    from loragen.bank.tasks import get_provider

    tasks = get_provider(args.provider, seed=args.seed).tasks()
    if args.family:
        families = sorted({t.family for t in tasks})
        unknown = sorted(set(args.family) - set(families))
        if unknown:
            raise NotFoundError(f"no family {unknown} in {args.provider}; its families are {families}")
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


def recipe_of(args: argparse.Namespace) -> dict:
    """The TrainConfig fields to train with: --config (else the provider's own recipe file, if it has one), with
    --steps and --rank applied."""
    from loragen.bank.tasks import get_provider
    from loragen.bank.train import cap_steps, load_recipe

    path = args.config or getattr(get_provider(args.provider, seed=args.seed), "recipe", None)
    recipe = load_recipe(path) if path else {}
    if args.rank is not None:
        recipe["r"] = args.rank
    return cap_steps(recipe, args.steps) if args.steps is not None else recipe


def run_generative(args: argparse.Namespace, tasks: list) -> int:
    """Build a generation suite's tasks (`bank.train.stored.train_provider_tasks`: a causal LM, val/test scores)."""
    from tqdm import tqdm

    from loragen.bank.errors import ConfigError
    from loragen.bank.store import Bank
    from loragen.bank.train.stored import train_provider_tasks

    if args.import_dir or args.import_only:
        raise ConfigError(f"--import-dir is for minilm-suite oracle caches; {args.provider} trains its oracles")
    with Bank.open(args.bank) as bank:
        summary = train_provider_tasks(bank, tasks, base_model=args.base_model, recipe=recipe_of(args),
                                       device=args.device,
                                       progress=not args.no_progress,
                                       report=lambda outcome: tqdm.write(outcome.line()))
        if summary.trained:
            bank.reindex()
    seconds = [o.metrics["seconds"] for o in summary.trained]
    em = [o.metrics.get("val_exact_match") for o in summary.trained]
    em = [v for v in em if v is not None]
    print(json.dumps({"built": len(summary.trained), "skipped": len(summary.skipped),
                      "mean_seconds_per_task": sum(seconds) / len(seconds) if seconds else None,
                      "mean_val_exact_match": sum(em) / len(em) if em else None}, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    from loragen.bank.errors import ConfigError, NotFoundError
    from loragen.bank.store import Bank
    from loragen.bank.tasks import OracleCache
    from loragen.bank.train import TrainConfig, build_bank, imported_oracles, trained_oracles

    apply_threads(args)
    tasks = select_tasks(args)
    if args.provider != "minilm-suite":
        return run_generative(args, tasks)
    if args.base_model is not None:
        raise ConfigError("--base-model is for --provider smollm2-gen; minilm-suite tasks train over MiniLM")
    config = TrainConfig(**recipe_of(args))
    oracle = trained_oracles(config)
    if args.import_dir:
        oracle = imported_oracles(args.import_dir, fallback=oracle)
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
