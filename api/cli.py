"""The `loragen` command line. Each subcommand lives in `api/commands/<name>.py` and exposes `add_parser`; options
shared by several commands are declared once, in `api/commands/_options.py`.

Output: results go to stdout; stderr gets warnings and errors only, unless -v (INFO) or -vv (DEBUG, library
loaders such as faiss's included). Progress bars stay.

Exit codes, each failure one line on stderr saying what was wrong and what to do:
  0    success
  1    loragen refused the input: a file, a setting (LORAGEN_*), a config, the bank, a checkpoint; also an
       unexpected internal error ("internal error: ...", with the traceback under -v)
  2    the command line itself is wrong: an unknown flag, a missing argument, a flag value out of range
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from loragen.api.commands._options import Parser, UsageError, add_verbose
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
    "trust": "loragen.api.commands.trust",
    "release": "loragen.api.commands.release",
}

EPILOG = """examples:
  loragen demo                     # the whole loop on the built-in suite, in a few minutes
  loragen merge ./my-adapter --base-model ./tiny-llama -o ./merged
  loragen serve --port 8000
  loragen predict ./my-adapter --text "Dzień dobry" --json
  loragen train hypernet --bank bank.duckdb -o ckpt/ --max-epochs 300
  loragen generate "label 0 if the text is written in Polish, label 1 if it is written in Czech" -o out/pl-cs
  loragen bank build --tasks 12 && loragen eval

exit codes: 0 ok, 1 loragen refused the input (the message says what to do), 2 bad command line, 130 interrupted
"""

# Libraries that log their own start-up at INFO (faiss: "Loading faiss with AVX2 support ...") stay quiet below -vv.
_CHATTY = ("faiss",)


def version() -> str:
    """The installed loragen version (package metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("loragen")
    except PackageNotFoundError:
        return "unknown (not installed)"


def version_text() -> str:
    """`loragen --version`: the version, then each shipped generator with its evaluation summary (manifest.json)."""
    from loragen.api.lookup import shipped_generators

    lines = [f"loragen {version()}"]
    shipped = shipped_generators()
    for base, entry in shipped.items():
        if "error" in entry:
            lines.append(f"shipped for {base}: {entry['error']}")
            continue
        methods = ", ".join(f"{m} ({info.get('bytes', 0) / 1e6:.1f} MB)" for m, info in entry.get("methods", {}).items())
        lines.append(f"shipped for {base}: {methods or 'nothing'}")
        for method, splits in (entry.get("evaluation") or {}).items():
            gains = ", ".join(f"{split} {value:.3f}" for split, value in splits.items() if isinstance(value, float))
            lines.append(f"  {method} normalised gain: {gains}")
    if not shipped:
        lines.append("shipped generators: none (train your own: `loragen train hypernet`, or `loragen demo`)")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """--version, computed when asked for (reading the shipped manifests is not worth doing on every call)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> Parser:
    parser = Parser(
        prog="loragen",
        description="Turn a plain-language task description into a LoRA adapter (PEFT format).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose(parser, top_level=True)
    parser.add_argument("--version", action=_VersionAction,
                        help="show the version and the shipped generators with their evaluation summary, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    _add_verbose_below(parser)
    return parser


def _add_verbose_below(parser: Parser) -> None:
    """-v/--verbose on every subcommand too (`loragen bank stats -v` works like `loragen -v bank stats`)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in dict.fromkeys(action.choices.values()):
            add_verbose(child)
            _add_verbose_below(child)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever `sys.stderr` is when a record is emitted (tests swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Warnings and errors only; -v adds INFO, -vv DEBUG (and the library loaders' chatter)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handler.setLevel(level)  # libraries that set their own logger to INFO (Lightning) are filtered here too
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)


def _one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _os_message(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror or err}; check the path and its permissions"


def _command(args) -> str:
    parts = [args.command, getattr(args, "bank_command", None), getattr(args, "release_command", None),
             getattr(args, "target", None)]
    return " ".join(["loragen", *(p for p in parts if p)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `loragen` command line and return its exit code (argparse exits 2 itself on usage errors)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are never downloaded at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed (the release manifest records it)
    verbosity = args.verbose
    configure_logging(verbosity)
    command = _command(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except UsageError as err:  # flags that only make sense together: like argparse's own errors
        print(f"{command}: error: {_one_line(err)} (see `{command} --help`)", file=sys.stderr)
        return 2
    except LoragenError as err:
        print(f"{command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:  # a path that is missing, unreadable or on a full disk: the user's to fix
        print(f"{command}: error: {_one_line(_os_message(err))}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: one line, the traceback only when asked for
        if verbosity:
            traceback.print_exc()
        hint = "" if verbosity else " (rerun with -v for the traceback)"
        print(f"{command}: internal error: {type(err).__name__}: {_one_line(err)}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
