"""`loragen train <target>`: train a generator. Each target lives in its own module listed in `TARGETS`.

Targets add themselves with `add_parser(train_subparsers)`; the meta-learner adds "meta" with one line here.
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
    p = sub.add_parser("train", help="train a generator (hypernet, ...) on the bank",
                       description="Train an adapter generator on the bank's in-bank tasks.")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for module in TARGETS.values():
        importlib.import_module(module).add_parser(targets)


def add_lightning_args(p: argparse.ArgumentParser) -> None:
    """Lightning's usual Trainer flags, passed through unchanged."""
    g = p.add_argument_group("Lightning Trainer")
    g.add_argument("--devices", default="auto", help="number of devices, a list, or 'auto' (default)")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default), ...")
    g.add_argument("--strategy", default="auto", help="auto (default), ddp, ddp_spawn, fsdp, ...")
    g.add_argument("--precision", default="32-true", help="32-true (default), bf16-mixed, 16-mixed, ...")
    g.add_argument("--max-epochs", type=int, default=None, help="stop after this many epochs")
    g.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: no limit)")
    g.add_argument("--num-nodes", type=int, default=1, help="nodes for multi-node training")
    g.add_argument("--log-every-n-steps", type=int, default=10)
    g.add_argument("--no-progress-bar", action="store_true", help="hide the progress bar")


def trainer_kwargs(args: argparse.Namespace) -> dict:
    devices = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    kwargs = {"devices": devices, "accelerator": args.accelerator, "strategy": args.strategy,
              "precision": args.precision, "max_steps": args.max_steps, "num_nodes": args.num_nodes,
              "log_every_n_steps": args.log_every_n_steps, "enable_progress_bar": not args.no_progress_bar}
    if args.max_epochs is not None:
        kwargs["max_epochs"] = args.max_epochs
    return kwargs
