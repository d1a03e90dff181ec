"""Write a directory all at once: into a temporary sibling, then one rename. A crash never leaves half of it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(path: str | os.PathLike, marker: str, error: type[Exception]) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path`.

    Args:
        path: the final directory.
        marker: a file name that identifies a directory of this kind; an existing non-empty `path` without it is
            never replaced (it is not ours to delete).
        error: the exception type raised for that refusal.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            if not (path / marker).exists() and any(path.iterdir()):
                raise error(f"{path}: exists and is not a directory loragen wrote ({marker} missing); "
                            "refusing to replace it.")
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
