"""`loragen bank train`: train oracle LoRAs for your own tasks (imported with `loragen bank tasks import`), resumably.

Hooked into `loragen bank` by `api.commands.bank` (`add_parser(bank_subparsers)`); the library side is
`loragen.bank.train.stored`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loragen.api.commands._options import (
    add_bank,
    add_base_model,
    add_device,
    add_no_progress,
    add_threads,
    apply_threads,
    positive_int,
)

EPILOG = """Classification tasks train over an encoder (prototype head, like the built-in suite); generation tasks
over a causal LM (loss on the output tokens). The adapted layers default to the base model's attention
projections (query/key/value, q_proj/v_proj or GPT-2's c_attn); a recipe file may set target_modules, layers, r,
lora_alpha, steps, lr, batch_size, max_length, ... (the fields of loragen.bank.train.TrainConfig).

examples:
  loragen bank train --bank bank.duckdb                    # every task without a final adapter
  loragen bank train --tasks reviews/sentiment --base-model ./my-encoder --steps 100
  loragen bank train --config recipe.yaml --force          # retrain all (replaces adapters trained before)
"""


def add_parser(bank_sub: argparse._SubParsersAction) -> None:
    p = bank_sub.add_parser(
        "train",
        help="train oracle LoRAs for your own tasks (resumable)",
        description="Train an oracle LoRA for each of the bank's own tasks (those imported with `loragen bank "
        "tasks import`) that has no final adapter yet, from its train split; store it with trajectory "
        "checkpoints and its val scores (and the base model's) in the bank.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bank(p)
    p.add_argument("--tasks", nargs="+", default=None, metavar="NAME",
                   help="only these tasks (default: every task of the bank's own without a final adapter)")
    add_base_model(p, "train over this base model", "the base_model of each task's manifest entry")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="YAML or JSON recipe of TrainConfig fields; the flags below override it")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="most training steps per task (recipe default 40)")
    p.add_argument("--force", action="store_true",
                   help="retrain tasks that already have a final adapter (replaces the ones trained before)")
    add_device(p)
    add_threads(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from loragen.bank.store import Bank
    from loragen.bank.train import cap_steps, load_recipe
    from loragen.bank.train.stored import train_stored_tasks

    apply_threads(args)
    recipe = load_recipe(args.config) if args.config else {}
    if args.steps is not None:
        recipe = cap_steps(recipe, args.steps)
    with Bank.open(args.bank) as bank:
        summary = train_stored_tasks(bank, args.tasks, base_model=args.base_model, recipe=recipe, force=args.force,
                                     device=args.device, progress=not args.no_progress,
                                     report=lambda outcome: tqdm.write(outcome.line()))
        if summary.trained:
            bank.reindex()
    skipped = f", skipped {len(summary.skipped)} that already have a final adapter (--force retrains)" \
        if summary.skipped else ""
    print(f"trained {len(summary.trained)} task(s){skipped}")
    return 0
