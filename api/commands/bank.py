"""`loragen bank add|import|export|search|reindex|stats|build|tasks|train`: manage the LoRA bank from the shell.

`add`/`import` live in `bank_import`, `build` (the built-in suite) in `bank_build`, `tasks` (your own tasks from a
manifest) in `bank_tasks`, `train` (oracles for your own tasks) in `bank_train`.

Every command takes `--bank PATH` (`_options.add_bank`: default `$LORAGEN_HOME/bank.duckdb`, else the user data
directory).
`loragen bank reindex` is what a cron job or systemd timer runs; the service runs the same job on a schedule.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path

from loragen.api.commands import bank_import
from loragen.api.commands._options import add_bank, non_empty, positive_int

EPILOG = """examples:
  loragen bank add ./my-adapter --description "classify Polish vs Czech sentences"
  loragen bank import ./adapters/* --skip-duplicates      # descriptions from each dir's loragen.json
  loragen bank import --manifest adapters.jsonl --base-model ./my-llama
  loragen bank tasks import tasks.yaml && loragen bank train && loragen bank tasks list
  loragen bank search "is this review positive?" -k 5
  loragen bank search --adapter ./my-adapter -k 5
  loragen bank export 3f2a9c0d1b2e4f5a ./out
  loragen bank reindex            # e.g. from cron: 0 3 * * *
  loragen bank stats
"""
# Subcommands written elsewhere that hook into `loragen bank` (each module exposes add_parser(bank_subparsers)).
_EXTENSIONS = ("loragen.api.commands.bank_build", "loragen.api.commands.bank_tasks", "loragen.api.commands.bank_train")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bank",
        help="manage the LoRA bank (add, import, export, search, reindex, stats, build, tasks, train)",
        description="Manage the LoRA bank: a DuckDB file of canonical adapters with FAISS search indexes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bank_sub = p.add_subparsers(dest="bank_command", metavar="BANK_COMMAND", required=True)
    bank_import.add_parser(bank_sub)
    _add_export(bank_sub)
    _add_search(bank_sub)
    _add_simple(bank_sub, "reindex", "rebuild the search indexes atomically (for cron/systemd timers)", _run_reindex)
    _add_simple(bank_sub, "stats", "print counts, sizes and index state as JSON", _run_stats)
    for module in _EXTENSIONS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_parser(bank_sub)


def _add_export(bank_sub) -> None:
    p = bank_sub.add_parser("export", help="write an adapter as a PEFT directory")
    p.add_argument("id", help="adapter id")
    p.add_argument("output", type=Path, help="directory to write")
    p.add_argument("--original", action="store_true", help="export the kept original factors, not the canonical")
    add_bank(p)
    p.set_defaults(func=_run_export)


def _add_search(bank_sub) -> None:
    p = bank_sub.add_parser("search", help="search by description or by an adapter's weights")
    p.add_argument("query", nargs="?", default=None, type=non_empty("describe the task you are looking for"),
                   help="a plain-language task description")
    p.add_argument("--adapter", type=Path, default=None, help="search by this PEFT adapter's ΔW instead")
    p.add_argument("-k", type=positive_int, default=5, help="number of hits (default 5)")
    p.add_argument("--json", action="store_true", help="print hits as JSON lines")
    add_bank(p)
    p.set_defaults(func=_run_search, search_parser=p)


def _add_simple(bank_sub, name: str, help_text: str, func) -> None:
    p = bank_sub.add_parser(name, help=help_text, description=help_text)
    add_bank(p)
    p.set_defaults(func=func)


def _open(args: argparse.Namespace):
    from loragen.bank.store import Bank

    return Bank.open(args.bank)


def _run_export(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        print(bank.export_peft(args.id, args.output, original=args.original))
    return 0


def _run_search(args: argparse.Namespace) -> int:
    from loragen.bank.lora.peft_format import load_peft

    if (args.query is None) == (args.adapter is None):
        args.search_parser.error("give either a QUERY or --adapter DIR (not both)")  # exits 2
    with _open(args) as bank:
        hits = bank.search_text(args.query, k=args.k) if args.query else bank.search_adapter(
            load_peft(args.adapter), k=args.k)
    for hit in hits:
        if args.json:
            print(json.dumps(hit.__dict__))
        else:
            print(f"{hit.score:.4f}\t{hit.id}\t{hit.task or '-'}\t{hit.description or ''}")
    return 0


def _run_reindex(args: argparse.Namespace) -> int:
    from loragen.bank.store.schedule import run_reindex

    with _open(args) as bank:
        info = run_reindex(bank)
    print(json.dumps(info, indent=2, default=str))
    return 0


def _run_stats(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        print(json.dumps(bank.stats(), indent=2))
    return 0
