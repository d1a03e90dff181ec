"""Which generator checkpoint and which bank a command uses: one lookup, one fixed order.

For a trained generator (``cvae``, ``abmll``) and for the bank it reads (retrieval, uncertainty scores):

1. the one named on the command line (or in the service settings): used as given, never replaced;
2. the user's own at the default location (`bank.paths.checkpoint_dir`, `bank.paths.bank_path`);
3. the demo's (`loragen demo` writes both under `bank.paths.demo_home()`).

So the small demo generator never shadows a better one at the default location, and after `loragen demo` a plain
`loragen generate "..."` works. Only the demo fallback is announced unasked (`announce`); -v names every choice.
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
Origin = Literal["named", "default", "demo"]

# method -> (checkpoint folder name under the home and the demo home, the command that trains it)
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "cvae": ("hypernet", "loragen train hypernet"),
    "abmll": ("meta", "loragen train meta"),
}
_CONFIG = "config.json"  # every generator checkpoint has one (bank/_checkpoint.py)


@dataclass(frozen=True)
class Found:
    """A located checkpoint or bank, and which rule of the order picked it."""

    path: Path
    origin: Origin

    def describe(self, what: str) -> str:
        """One line for stderr: which `what` is used and why."""
        why = {"named": "as named", "default": "the default location",
               "demo": "the demo's; train your own to replace it"}[self.origin]
        return f"using {what} {self.path} ({why})"


def find_checkpoint(method: str, named: Path | None = None) -> Found:
    """The checkpoint `method` generates with: named > the user's default > the demo's.

    Args:
        method: "cvae" or "abmll".
        named: a checkpoint directory given explicitly (returned as is; loading it reports what is wrong).

    Raises:
        CheckpointError: nothing named and no checkpoint at the default location or the demo's.
    """
    if named is not None:
        return Found(Path(named).expanduser(), "named")
    folder, command = CHECKPOINTS[method]
    candidates = (Found(paths.checkpoint_dir(folder), "default"), Found(paths.demo_home() / folder, "demo"))
    for found in candidates:
        if (found.path / _CONFIG).is_file():
            return found
    raise CheckpointError(f"no {folder} checkpoint at {candidates[0].path} (nor the demo's at {candidates[1].path}); "
                          f"train one with `{command}`, run `loragen demo`, or pass --checkpoint DIR")


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
