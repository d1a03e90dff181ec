"""Command-line options shared by several `loragen` commands, each declared once here.

A command calls `add_bank(p)` instead of writing its own ``p.add_argument("--bank", ...)``, so a flag has one
name, one default and one help text wherever it appears. Values are checked by argparse (`positive_int`,
`device_name`, ...): a bad value is a usage error (exit 2) naming the flag, before anything heavy loads.

Nothing here imports torch: the whole parser is built on every call, `loragen --help` included. Help text that
needs the library (the packaged base models) is passed as a callable and filled in only when help is printed.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class UsageError(Exception):
    """A combination of flags that argparse cannot check itself; the CLI prints it like argparse does (exit 2)."""


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (no usage block), and whose help may be computed lazily.

    `help=` of an argument and `epilog=` may be callables returning the text; they are called only when help is
    printed, so building the parser stays cheap.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def format_help(self) -> str:
        for action in self._actions:
            if callable(action.help):
                action.help = action.help()
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


# ---- value types: argparse calls them on the flag's text; ArgumentTypeError becomes "argument --x: <message>"

def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _bounded(int, text, lambda v: v >= 1, ">= 1")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _bounded(int, text, lambda v: v >= 0, ">= 0")


def positive_float(text: str) -> float:
    """A number > 0."""
    return _bounded(float, text, lambda v: v > 0, "> 0")


def non_negative_float(text: str) -> float:
    """A number >= 0."""
    return _bounded(float, text, lambda v: v >= 0, ">= 0")


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    return _bounded(float, text, lambda v: 0 < v <= 1, "in (0, 1]")


def non_empty(what: str) -> Callable[[str], str]:
    """Text with something other than whitespace in it; the error says `what` to give instead."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty; {what}")
        return text

    parse.__name__ = "text"
    return parse


def device_name(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps (whether CUDA is present is checked when the device is used)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    return text


def comma_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of `choices` ("retrieve,cvae")."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(x.strip() for x in text.split(",") if x.strip())
        unknown = [x for x in items if x not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated list of {', '.join(choices)}")
        return items

    parse.__name__ = "comma_list"
    return parse


def _bounded(kind: type, text: str, ok: Callable[[Any], bool], rule: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
    return value


# ---- options shared by several commands

def add_bank(p: argparse.ArgumentParser) -> None:
    """`--bank PATH`: the bank file every bank-reading command takes."""
    p.add_argument("--bank", type=Path, default=None, metavar="PATH",
                   help="bank DuckDB file (default: $LORAGEN_HOME/bank.duckdb, else the user data directory)")


def base_model_help(action: str, default: str = "minilm") -> Callable[[], str]:
    """Help for a base-model option: what it is for, then the packaged models by name (read when help prints)."""

    def text() -> str:
        return f"{action}: {packaged_base_models()}, or a local transformers directory (default: {default})"

    return text


def packaged_base_models() -> str:
    """The packaged base models (`bank.base_model.PACKAGED`) as 'minilm (sentence-transformers/..., encoder), ...'."""
    from loragen.bank.base_model import PACKAGED

    return ", ".join(f"{m.aliases[-1]} ({m.id}, {m.kind})" for m in PACKAGED)


def add_base_model(p: argparse.ArgumentParser | argparse._ArgumentGroup, action: str,
                   default: str = "minilm") -> None:
    """`--base-model NAME|DIR`: a packaged base model by name or a local transformers directory (`default` says in
    the help what None means for this command)."""
    p.add_argument("--base-model", default=None, metavar="NAME|DIR", help=base_model_help(action, default))


def add_packaged_base_model(p: argparse.ArgumentParser, help: str) -> None:
    """`--base-model NAME`: one of the packaged base models by short name (no directories), default the first."""
    from loragen.bank.base_model import PACKAGED

    p.add_argument("--base-model", choices=[m.aliases[-1] for m in PACKAGED], default=PACKAGED[0].aliases[-1],
                   help=help)


def add_device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """`--device`: where models run."""
    shown = default or "auto"
    p.add_argument("--device", type=device_name, default=default,
                   help=f"auto, cpu, cuda, cuda:N or mps (default: {shown}, which picks CUDA when present)")


def add_checkpoint(p: argparse.ArgumentParser, what: str) -> None:
    """`--checkpoint DIR`: a trained generator's checkpoint (default: where its training command writes)."""
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help=f"{what} (default: where `loragen train` writes it, under $LORAGEN_HOME)")


def add_threads(p: argparse.ArgumentParser, default: int | None = None, why: str = "") -> None:
    """`--threads N`: torch intra-op CPU threads."""
    shown = f"{default}" if default is not None else "torch's choice"
    p.add_argument("--threads", type=positive_int, default=default, metavar="N",
                   help=f"torch CPU threads (default: {shown}{'; ' + why if why else ''})")


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU thread count from `--threads` (when given)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def add_seed(p: argparse.ArgumentParser, what: str, default: int | None = None) -> None:
    """`--seed N`: the seed of whatever the command draws at random (`what`)."""
    shown = f"; default {default}" if default is not None else ""
    p.add_argument("--seed", type=int, default=default, metavar="N", help=f"{what}{shown}")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """`--no-progress-bar` (alias `--no-progress`): hide tqdm/Lightning progress bars."""
    p.add_argument("--no-progress-bar", "--no-progress", dest="no_progress", action="store_true",
                   help="hide progress bars (e.g. in logs and CI)")


def add_verbose(p: argparse.ArgumentParser, top_level: bool = False) -> None:
    """`-v/--verbose`: -v logs INFO, -vv DEBUG (default: warnings and errors only)."""
    p.add_argument("-v", "--verbose", action="count", default=0 if top_level else argparse.SUPPRESS,
                   help="-v: log progress (INFO); -vv: debug, library loaders included (default: warnings only)")


# ---- the training commands: one set of flags for `train hypernet` and `train meta`

def add_train_options(p: argparse.ArgumentParser, method: str, config_class: str) -> None:
    """The flags every `loragen train <target>` takes, with the same defaults.

    Args:
        p: the target's parser.
        method: the checkpoint name under $LORAGEN_HOME ("hypernet" or "meta", see `bank.paths.checkpoint_dir`).
        config_class: the config the `--config` file holds (for the help).
    """
    add_bank(p)
    p.add_argument("-o", "--output", type=Path, default=None, metavar="DIR",
                   help=f"checkpoint directory (default: $LORAGEN_HOME/{method}, where generate/serve/eval look)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help=f"JSON or YAML {config_class}; the flags below override its values")
    add_seed(p, "override train.seed (data order, init, sampling)")
    p.add_argument("--lr", type=positive_float, default=None, help="override train.lr")
    p.add_argument("--max-steps", type=positive_int, default=None, metavar="N",
                   help="stop after N optimiser steps (default: the config's / no limit)")
    add_threads(p)
    add_no_progress(p)


def train_output(args: argparse.Namespace, method: str) -> Path:
    """`-o` or the default checkpoint location of `method`."""
    from loragen.bank import paths

    return args.output or paths.checkpoint_dir(method)


def add_lightning(p: argparse.ArgumentParser, note: str = "") -> None:
    """Lightning's usual Trainer flags, passed through unchanged (`trainer_kwargs`); `note` heads the group."""
    about = "passed to lightning's Trainer unchanged" + (f"; {note}" if note else "")
    g = p.add_argument_group("Lightning Trainer", about)
    g.add_argument("--max-epochs", type=positive_int, default=None, metavar="N", help="stop after N epochs")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (default), ...")
    g.add_argument("--devices", default="auto", help="number of devices, a list, or 'auto' (default)")
    g.add_argument("--strategy", default="auto", help="auto (default), ddp, ddp_spawn, fsdp, ...")
    g.add_argument("--precision", default="32-true", help="32-true (default), bf16-mixed, 16-mixed, ...")
    g.add_argument("--num-nodes", type=positive_int, default=1, help="nodes for multi-node training (default 1)")
    g.add_argument("--log-every-n-steps", type=positive_int, default=10, help="default 10")


def trainer_kwargs(args: argparse.Namespace) -> dict:
    """Lightning `Trainer` keyword arguments from the `add_lightning` and `add_train_options` flags."""
    devices = args.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    kwargs = {"devices": devices, "accelerator": args.accelerator, "strategy": args.strategy,
              "precision": args.precision, "num_nodes": args.num_nodes, "log_every_n_steps": args.log_every_n_steps,
              "enable_progress_bar": not args.no_progress}
    if args.max_steps is not None:
        kwargs["max_steps"] = args.max_steps
    if args.max_epochs is not None:
        kwargs["max_epochs"] = args.max_epochs
    return kwargs
