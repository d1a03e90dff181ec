"""`loragen bank add|import|export|search|reindex|stats`: manage the LoRA bank from the shell.

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

from loragen.api.commands._options import add_bank, non_empty, positive_int

EPILOG = """examples:
  loragen bank add ./my-adapter --description "classify Polish vs Czech sentences"
  loragen bank import ./adapters/* --skip-duplicates
  loragen bank search "is this review positive?" -k 5
  loragen bank search --adapter ./my-adapter -k 5
  loragen bank export 3f2a9c0d1b2e4f5a ./out
  loragen bank reindex            # e.g. from cron: 0 3 * * *
  loragen bank stats
"""
# Subcommands written elsewhere that hook into `loragen bank` (each module exposes add_parser(bank_subparsers)).
_EXTENSIONS = ("loragen.api.commands.bank_build",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bank",
        help="manage the LoRA bank (add, import, export, search, reindex, stats)",
        description="Manage the LoRA bank: a DuckDB file of canonical adapters with FAISS search indexes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bank_sub = p.add_subparsers(dest="bank_command", metavar="BANK_COMMAND", required=True)
    _add_add(bank_sub)
    _add_import(bank_sub)
    _add_export(bank_sub)
    _add_search(bank_sub)
    _add_simple(bank_sub, "reindex", "rebuild the search indexes atomically (for cron/systemd timers)", _run_reindex)
    _add_simple(bank_sub, "stats", "print counts, sizes and index state as JSON", _run_stats)
    for module in _EXTENSIONS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_parser(bank_sub)


def _add_common_write(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help="name of the task the adapter solves")
    p.add_argument("--kind", default="uploaded", choices=["final", "checkpoint", "generated", "uploaded"])
    p.add_argument("--keep-original", action="store_true", help="also keep the factors as given (not only canonical)")
    p.add_argument("--skip-duplicates", action="store_true",
                   help="an adapter already in the bank returns its id instead of failing")


def _add_add(bank_sub) -> None:
    p = bank_sub.add_parser("add", help="add one PEFT adapter directory", description="Add one PEFT LoRA adapter "
                            "directory (safetensors) to the bank, in canonical form; prints its id.")
    p.add_argument("adapter", type=Path, help="PEFT adapter directory")
    p.add_argument("--description", default=None, help="what the adapter does (searchable)")
    _add_common_write(p)
    add_bank(p)
    p.set_defaults(func=_run_add)


def _add_import(bank_sub) -> None:
    p = bank_sub.add_parser("import", help="import many PEFT adapter directories", description="Import PEFT adapter "
                            "directories; a directory without adapter_config.json is searched one level down. Each "
                            "adapter is its own transaction; the first error stops the import (earlier ones stay).")
    p.add_argument("paths", nargs="+", type=Path, help="adapter directories or folders of them")
    p.add_argument("--description", default=None, help="description for every adapter (default: from metadata)")
    _add_common_write(p)
    add_bank(p)
    p.set_defaults(func=_run_import)


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


def _write_kwargs(args: argparse.Namespace) -> dict:
    return {
        "description": args.description,
        "task": args.task,
        "kind": args.kind,
        "keep_original": args.keep_original,
        "on_duplicate": "skip" if args.skip_duplicates else "error",
    }


def _run_add(args: argparse.Namespace) -> int:
    with _open(args) as bank:
        print(bank.import_peft(args.adapter, **_write_kwargs(args)))
    return 0


def _adapter_dirs(paths: list[Path]) -> list[Path]:
    from loragen.bank.errors import AdapterFormatError
    from loragen.bank.lora.peft_format import CONFIG_NAME

    found: list[Path] = []
    for path in paths:
        if (path / CONFIG_NAME).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.glob(f"*/{CONFIG_NAME}")))
        else:
            raise AdapterFormatError(f"{path}: not a directory; expected PEFT adapter directories.")
    if not found:
        raise AdapterFormatError(f"no PEFT adapter directories (with {CONFIG_NAME}) under {[str(p) for p in paths]}")
    return found


def _run_import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    dirs = _adapter_dirs(args.paths)
    with _open(args) as bank:
        for path in tqdm(dirs, desc="import", unit="adapter", disable=len(dirs) < 5):
            print(f"{bank.import_peft(path, **_write_kwargs(args))}\t{path}")
    return 0


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
