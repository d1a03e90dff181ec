"""`loragen bank add|import`: PEFT adapter directories into the bank, each with its own description.

Hooked into `loragen bank` by `api.commands.bank`. Where an adapter's description (and task, paraphrases) comes
from, first found wins:

1. `--description` / `--task` (a single directory only),
2. an adapters manifest (`--manifest adapters.jsonl`: {"path", "description", "task"?, "paraphrases"?} lines;
   paths relative to the manifest),
3. a `loragen.json` sidecar in the adapter directory ({"description", "task", "paraphrases"}),
4. loragen's own metadata in the adapter's safetensors header (adapters loragen wrote),
5. the description of the adapter's task, when that task is in the bank.

An adapter without any is refused before anything is imported. A relative `base_model_name_or_path` in an adapter
config is taken relative to the adapter directory; `--base-model` overrides it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loragen.api.commands._options import UsageError, add_bank, add_base_model

SIDECAR = "loragen.json"
SIDECAR_KEYS = ("description", "task", "paraphrases")
MANIFEST_KEYS = ("path", *SIDECAR_KEYS)
_GIVE = (f"give one with --description (a single directory), a {SIDECAR} sidecar {{\"description\": ...}} in the "
         "directory, or --manifest FILE with {\"path\", \"description\"} lines")


def add_parser(bank_sub: argparse._SubParsersAction) -> None:
    p = bank_sub.add_parser("add", help="add one PEFT adapter directory", description="Add one PEFT LoRA adapter "
                            "directory (safetensors) to the bank, in canonical form; prints its id. Its description "
                            f"comes from --description, a {SIDECAR} sidecar or the adapter's own metadata.")
    p.add_argument("adapter", type=Path, help="PEFT adapter directory")
    p.add_argument("--description", default=None, help="what the adapter does (searchable)")
    _add_common(p)
    p.set_defaults(func=run_add)
    p = bank_sub.add_parser(
        "import", help="import many PEFT adapter directories, each with its own description",
        description="Import PEFT adapter directories; a directory without adapter_config.json is searched one level "
        f"down. Each adapter's description comes from --manifest, its {SIDECAR} sidecar "
        '({"description", "task", "paraphrases"}) or its own metadata; all are checked before any is imported. '
        "Each adapter is its own transaction; the first error stops the import (earlier ones stay).")
    p.add_argument("paths", nargs="*", type=Path, help="adapter directories or folders of them")
    p.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                   help='JSONL of {"path", "description", "task"?, "paraphrases"?} lines (paths relative to it)')
    p.add_argument("--description", default=None, help="the description, when importing a single directory")
    _add_common(p)
    p.set_defaults(func=run_import)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help="name of the task the adapter solves")
    p.add_argument("--kind", default="uploaded", choices=["final", "checkpoint", "generated", "uploaded"],
                   help="final marks it as its task's oracle (the task must be in the bank); default uploaded")
    add_base_model(p, "the base model the adapter is for",
                   "its adapter_config.json base_model_name_or_path, relative paths from the adapter dir")
    p.add_argument("--keep-original", action="store_true", help="also keep the factors as given (not only canonical)")
    p.add_argument("--skip-duplicates", action="store_true",
                   help="an adapter already in the bank returns its id instead of failing")
    add_bank(p)


@dataclass
class _Adapter:
    """One adapter directory to import and what is known about it."""

    path: Path
    description: str | None = None
    task: str | None = None
    paraphrases: tuple[str, ...] = ()


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
    if paths and not found:
        raise AdapterFormatError(f"no PEFT adapter directories (with {CONFIG_NAME}) under {[str(p) for p in paths]}")
    return found


def _fields(obj: Any, keys: tuple[str, ...], where: str, problems: list[str]) -> dict[str, Any]:
    """The known fields of a sidecar or manifest entry, type-checked (problems recorded with `where`)."""
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected a JSON object with keys {list(keys)}")
        return {}
    for key in sorted(set(obj) - set(keys)):
        problems.append(f"{where}: unknown key {key!r}; allowed: {list(keys)}")
    for key in ("path", "description", "task"):
        if key in obj and not (isinstance(obj[key], str) and obj[key].strip()):
            problems.append(f"{where}: `{key}` must be a non-empty string")
    para = obj.get("paraphrases", [])
    if not (isinstance(para, list) and all(isinstance(x, str) and x.strip() for x in para)):
        problems.append(f"{where}: `paraphrases` must be a list of non-empty strings")
    return {k: v for k, v in obj.items() if k in keys}


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(f"{path}: not valid JSON ({err})")
        return None


def _manifest(path: Path, problems: list[str]) -> list[_Adapter]:
    from loragen.bank.lora.peft_format import CONFIG_NAME

    if not path.is_file():
        raise FileNotFoundError(2, "no such adapters manifest", str(path))
    out = []
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            problems.append(f"{path}:{n}: not valid JSON ({err.msg})")
            continue
        before = len(problems)
        entry = _fields(obj, MANIFEST_KEYS, f"{path}:{n}", problems)
        if "path" not in entry and len(problems) == before:
            problems.append(f"{path}:{n}: `path` (the adapter directory) is required")
        if len(problems) > before:
            continue
        adapter_dir = path.parent / entry["path"]
        if not (adapter_dir / CONFIG_NAME).is_file():
            problems.append(f"{path}:{n}: {adapter_dir} is not a PEFT adapter directory (no {CONFIG_NAME})")
            continue
        out.append(_Adapter(adapter_dir, entry.get("description"), entry.get("task"),
                            tuple(entry.get("paraphrases", ()))))
    return out


def _own_metadata(path: Path) -> dict[str, Any]:
    """loragen's metadata in the adapter's safetensors header ({} when absent or unreadable: import says why)."""
    from safetensors import safe_open

    from loragen.bank.lora.peft_format import WEIGHTS_NAME

    try:
        with safe_open(str(path / WEIGHTS_NAME), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("loragen") or "{}")
    except Exception:  # a broken file is reported by the import itself, with the PEFT loader's message
        return {}
    return meta if isinstance(meta, dict) else {}


def _resolve(item: _Adapter, args: argparse.Namespace, tasks: dict[str, Any], problems: list[str]) -> _Adapter:
    """Fill in description, task and paraphrases from the flags, the sidecar, the adapter's metadata, its task."""
    sidecar: dict[str, Any] = {}
    if (item.path / SIDECAR).is_file():
        before = len(problems)
        raw = _read_json(item.path / SIDECAR, problems)
        if len(problems) == before:
            sidecar = _fields(raw, SIDECAR_KEYS, str(item.path / SIDECAR), problems)
    own = _own_metadata(item.path)
    task = args.task or item.task or sidecar.get("task") or (own.get("task") if isinstance(own.get("task"), str)
                                                               else None)
    record = tasks.get(task) if task else None
    description = (args.description or item.description or sidecar.get("description")
                   or (own.get("description") if isinstance(own.get("description"), str) else None)
                   or (record.description if record else None))
    if not description:
        problems.append(f"adapter {item.path} has no description; {_GIVE}")
    if args.kind == "final" and record is None:
        problems.append(f"adapter {item.path}: --kind final makes it a task's oracle, but "
                        + (f"its task {task!r} is not in the bank (import it: `loragen bank tasks import MANIFEST`)"
                           if task else "it names no task (give --task, or task in its sidecar/manifest entry)"))
    return _Adapter(item.path, description, task, item.paraphrases or tuple(sidecar.get("paraphrases", ())))


def _import(args: argparse.Namespace, items: list[_Adapter], show: Callable[[str, Path], None]) -> None:
    """Check every adapter's description (and --kind final's task), then import them one by one."""
    from tqdm import tqdm

    from loragen.bank.config import raise_problems
    from loragen.bank.store import Bank

    with Bank.open(args.bank) as bank:
        tasks = {t.name: t for t in bank.tasks()}
        problems: list[str] = []
        resolved = [_resolve(item, args, tasks, problems) for item in items]
        raise_problems("adapter import", problems)  # nothing is imported unless every adapter is described
        for item in tqdm(resolved, desc="import", unit="adapter", disable=len(resolved) < 5):
            adapter_id = bank.import_peft(item.path, description=item.description, task=item.task, kind=args.kind,
                                          keep_original=args.keep_original, base_model=args.base_model,
                                          on_duplicate="skip" if args.skip_duplicates else "error",
                                          paraphrases=item.paraphrases)
            show(adapter_id, item.path)


def run_add(args: argparse.Namespace) -> int:
    _import(args, [_Adapter(args.adapter)], lambda adapter_id, _: print(adapter_id))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from loragen.bank.config import raise_problems

    if not args.paths and args.manifest is None:
        raise UsageError("give adapter directories, --manifest FILE, or both")
    problems: list[str] = []
    items = _manifest(args.manifest, problems) if args.manifest else []
    raise_problems(f"adapters manifest {args.manifest}", problems)
    items += [_Adapter(p) for p in _adapter_dirs(args.paths)]
    if args.description is not None and len(items) != 1:
        raise UsageError(f"--description describes one adapter, but {len(items)} are being imported; give each its "
                         f"own with a {SIDECAR} sidecar or --manifest FILE")
    _import(args, items, lambda adapter_id, path: print(f"{adapter_id}\t{path}"))
    return 0
