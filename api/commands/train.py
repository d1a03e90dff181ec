"""`loragen train <target>`: train a generator. Each target lives in its own module listed in `TARGETS`.

Targets add themselves with `add_parser(train_subparsers)`. Every target takes the same core flags with the same
defaults (`_options.add_train_options`: --bank, -o, --config, --seed, --lr, --max-steps, --threads,
--no-progress-bar); flags that only make sense for one target sit in that target's own argument group.
"""

from __future__ import annotations

import argparse
import importlib

# target -> module defining `add_parser(train_subparsers)`.
TARGETS: dict[str, str] = {
    "hypernet": "loragen.api.commands._train_hypernet",
    "meta": "loragen.api.commands.train_meta",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a generator (hypernet, meta) on the bank",
                       description="Train an adapter generator on the bank's in-bank tasks: `hypernet` (the "
                       "ICM-LoRA CVAE) or `meta` (ABMLL). Both take the same core flags.")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for module in TARGETS.values():
        importlib.import_module(module).add_parser(targets)
