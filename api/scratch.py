"""Scratch folders for uploads and downloads, named after the process that owns them, and swept when stale.

A request unpacks an upload into ``<tmp>/loragen-upload-<pid>-<random>`` and removes it when it is done. A server
killed mid-request (SIGKILL, OOM) cannot clean up, so `sweep_stale` runs at server start and removes the scratch
folders of processes that are gone, or that are older than `STALE_AFTER_S` (no request takes that long), and
nothing else: only folders with our prefixes, owned by this user, never through a symlink.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("upload", "export")
STALE_AFTER_S = 15 * 60.0
# loragen-<kind>-<pid>-<random>; folders from versions before the pid was recorded have no pid part.
_NAME = re.compile(r"^loragen-(?:upload|export)-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")


def make_scratch_dir(kind: str, root: str | os.PathLike | None = None) -> Path:
    """Create a fresh private scratch folder for one request (the caller removes it).

    Args:
        kind: "upload" or "export".
        root: where to create it (default: the system temp folder).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return Path(tempfile.mkdtemp(prefix=f"loragen-{kind}-{os.getpid()}-", dir=root))


def sweep_stale(root: str | os.PathLike | None = None, *, max_age_s: float = STALE_AFTER_S,
                now: float | None = None) -> list[Path]:
    """Remove the stale scratch folders under `root` (default: the system temp folder).

    A folder is stale when its owner process is gone, or when it was last modified more than `max_age_s` ago.
    Only folders matching our name pattern and owned by this user are considered; symlinks are never followed.

    Returns:
        The folders removed.
    """
    root = Path(root or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError as err:
        log.warning("cannot list %s to sweep stale scratch folders: %s", root, err)
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        pid = match.group("pid")
        if (pid is not None and not _alive(int(pid))) or now - info.st_mtime > max_age_s:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    if removed:
        log.info("removed %d stale scratch folder(s) under %s (left by killed processes)", len(removed), root)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or not a pid at all
        return False
    except PermissionError:  # another user's live process
        return True
    return True
