"""The `loragen` command line. Each subcommand lives in `api/commands/<name>.py` and exposes `add_parser`.

Exit codes: 0 success, 1 a loragen error (bad input, missing file: the message says what to do),
2 bad command-line usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from loragen.bank.errors import LoragenError

# name -> module defining `add_parser(subparsers)`. One table, checked against the parser by a test.
COMMANDS: dict[str, str] = {
    "demo": "loragen.api.commands.demo",
    "merge": "loragen.api.commands.merge",
    "bank": "loragen.api.commands.bank",
    "serve": "loragen.api.commands.serve",
    "predict": "loragen.api.commands.predict",
    "train": "loragen.api.commands.train",
    "generate": "loragen.api.commands.generate",
    "eval": "loragen.api.commands.eval",
}

EPILOG = """examples:
  loragen demo                     # the whole loop on the built-in suite, in a few minutes
  loragen merge ./my-adapter --base-model ./tiny-llama -o ./merged
  loragen serve --port 8000
  loragen predict ./my-adapter --text "Dzień dobry" --json
  loragen train hypernet --bank bank.duckdb -o ckpt/ --max-epochs 300
  loragen generate "label 0 if the text is written in Polish, label 1 if it is written in Czech" -o out/pl-cs
  loragen bank build --tasks 12 && loragen eval
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loragen",
        description="Turn a plain-language task description into a LoRA adapter (PEFT format).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are never downloaded at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except LoragenError as err:
        print(f"loragen {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
