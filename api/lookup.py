"""Which generator checkpoint and which bank a command uses: one lookup, one fixed order.

For a trained generator (``cvae``, ``abmll``) and for the bank it reads (retrieval, uncertainty scores):

1. the one named on the command line (or in the service settings): used as given, never replaced;
2. the user's own at the default location (`bank.paths.checkpoint_dir`, `bank.paths.bank_path`);
3. (generators only) the one shipped with loragen for the requested base model (default MiniLM):
   `bank.paths.shipped_dir`, package data written by `loragen release build`, with a manifest.json;
4. the demo's (`loragen demo` writes both under `bank.paths.demo_home()`).

The shipped generator comes before the demo's: it is trained on the whole suite, the demo's on 16 tasks in a few
minutes, so running the demo never makes plain `generate` worse; the demo's remains the fallback where nothing is
shipped (a checkout without release artefacts, a base model with none). Your own, or a named one, always wins.
Only the demo fallback is announced unasked (`announce`); -v names every choice.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from loragen.bank import paths
from loragen.bank.errors import CheckpointError

log = logging.getLogger(__name__)
Origin = Literal["named", "default", "shipped", "demo"]

# method -> (checkpoint folder name under the home and the demo home, the command that trains it)
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "cvae": ("hypernet", "loragen train hypernet"),
    "abmll": ("meta", "loragen train meta"),
}
_CONFIG = "config.json"  # every generator checkpoint has one (bank/_checkpoint.py)
MANIFEST = "manifest.json"  # next to each base model's shipped checkpoints


@dataclass(frozen=True)
class Found:
    """A located checkpoint or bank, and which rule of the order picked it."""

    path: Path
    origin: Origin

    def describe(self, what: str) -> str:
        """One line for stderr: which `what` is used and why."""
        why = {"named": "as named", "default": "the default location",
               "shipped": "shipped with loragen; train your own to replace it",
               "demo": "the demo's; train your own to replace it"}[self.origin]
        return f"using {what} {self.path} ({why})"


def find_checkpoint(method: str, named: Path | None = None, base_model: str | None = None) -> Found:
    """The checkpoint `method` generates with: named > the user's default > shipped for `base_model` > the demo's.

    Args:
        method: "cvae" or "abmll".
        named: a checkpoint directory given explicitly (returned as is; loading it reports what is wrong).
        base_model: the base model asked for (a packaged name, an id or a path): selects the shipped generator
            (None: the default base model, MiniLM); when given, a default or demo checkpoint for another base
            model is passed over (your MiniLM generator does not hide the one shipped for SmolLM2).

    Raises:
        CheckpointError: nothing named and no checkpoint at the default location, shipped, or the demo's.
    """
    if named is not None:
        return Found(Path(named).expanduser(), "named")
    folder, command = CHECKPOINTS[method]
    candidates = (Found(paths.checkpoint_dir(folder), "default"),
                  Found(paths.shipped_dir(folder, _base_id(base_model)), "shipped"),
                  Found(_demo_home(base_model) / folder, "demo"))
    want = _base_id(base_model) if base_model is not None else None
    for found in candidates:
        if (found.path / _CONFIG).is_file():
            if want is not None and found.origin != "shipped" and _for_other_base(found.path, want):
                log.info("skipping %s: it generates for another base model than %s", found.path, want)
                continue
            return found
    raise CheckpointError(f"no {folder} checkpoint at {candidates[0].path} (none shipped for "
                          f"{_base_id(base_model)}, none from the demo at {candidates[2].path}); train one with "
                          f"`{command}`, run `loragen demo`, or pass --checkpoint DIR")


def _demo_home(base_model: str | None) -> Path:
    """The demo home of the requested base model: `loragen demo` for MiniLM, `loragen demo --base-model smollm2`
    (``<home>/demo-smollm2``) for another packaged model."""
    from loragen.bank.base_model import DEFAULT_BASE_MODEL, packaged_model

    packaged = packaged_model(base_model) if base_model is not None else None
    if packaged is None or packaged.id == DEFAULT_BASE_MODEL:
        return paths.demo_home()
    return paths.demo_home(packaged.aliases[-1])


def _for_other_base(path: Path, want: str) -> bool:
    """Whether the checkpoint at `path` records a base model other than `want` (unreadable: not known to be)."""
    try:
        have = checkpoint_base_model(path)
    except CheckpointError:
        return False
    return have is not None and _base_id(have) != want


def _base_id(base_model: str | None) -> str:
    """The canonical id of a requested base model (the default one when None); unknown names pass through."""
    from loragen.bank.base_model import DEFAULT_BASE_MODEL

    if base_model is None:
        return DEFAULT_BASE_MODEL
    try:
        from loragen.bank.base_model import canonical_base_model_id

        return canonical_base_model_id(base_model)
    except Exception:  # an unknown name: it cannot have a shipped generator; loading reports the real problem
        return str(base_model)


def shipped_generators() -> dict[str, dict]:
    """Base model id -> its shipped manifest summary: {"methods": {method: {"path", "bytes"}}, "evaluation",
    "created_at", "loragen_version"}; empty when nothing is shipped. Never raises (a broken manifest is reported
    in its entry)."""
    out: dict[str, dict] = {}
    root = paths.shipped_root()
    for manifest in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            out[manifest.parent.name.replace("__", "/")] = {"error": f"unreadable {MANIFEST}: {err}"}
            continue
        base = str(data.get("base_model") or manifest.parent.name.replace("__", "/"))
        out[base] = {key: data[key] for key in ("methods", "evaluation", "created_at", "loragen_version")
                     if key in data}
    return out


def find_checkpoints(configured: dict[str, Path | None], methods: tuple[str, ...]) -> dict[str, Path]:
    """`find_checkpoint` for each learned method among `methods` (configured path or None each), logged (a warning
    for the demo's); a method with no checkpoint anywhere is left out (loading it reports the loader's reason)."""
    out = {}
    for method in (m for m in methods if m in CHECKPOINTS):
        try:
            found = find_checkpoint(method, configured.get(method))
        except CheckpointError:
            continue
        level = logging.WARNING if found.origin == "demo" else logging.INFO
        log.log(level, "%s", found.describe(f"{method} checkpoint"))
        out[method] = found.path
    return out


def find_bank(named: Path | None = None) -> Found | None:
    """The bank to read: named > the default bank (when it exists) > the demo's (when it exists) > None."""
    if named is not None:
        return Found(Path(named).expanduser(), "named")
    for found in (Found(paths.bank_path(), "default"), Found(paths.demo_home() / paths.BANK_FILE, "demo")):
        if found.path.is_file():
            return found
    return None


def checkpoint_base_model(path: Path) -> str | None:
    """The base model a generator checkpoint generates for (its recorded layout), or None when it records none.

    Raises:
        CheckpointError: the directory holds no readable checkpoint config.
    """
    config = Path(path) / _CONFIG
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{config}: not a readable checkpoint config ({err}); pass a checkpoint directory "
                              "written by `loragen train`") from None
    layout = meta.get("layout") if isinstance(meta, dict) else None
    base = layout.get("base_model") if isinstance(layout, dict) else None
    return str(base) if base else None


def announce(found: Found | None, what: str, verbose: int = 0) -> None:
    """Say on stderr which checkpoint or bank is used: always for the demo fallback, else only with -v."""
    if found is not None and (verbose > 0 or found.origin == "demo"):
        print(found.describe(what), file=sys.stderr)
