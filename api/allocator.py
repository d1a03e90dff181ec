"""Keeping a long-running server's native heap from creeping (glibc's malloc; elsewhere these do nothing).

A server runs requests on a pool of worker threads, and glibc gives threads their own malloc arenas (up to 8 per
core). Memory a request frees stays in its arena, in pieces a later request of another size cannot reuse, and glibc
hands a heap's free pages back to the system only from the top of the main arena. So a server's resident memory
can creep up under a steady load with nothing leaking. Three remedies, all on by default in `loragen serve`
(`Settings.malloc_arena_max`, `Settings.malloc_mmap_threshold`, `Settings.malloc_trim_interval_s`):

- fewer arenas (`limit_arenas`): threads share them, so freed memory is reused;
- a fixed mmap threshold (`fix_mmap_threshold`): large blocks (activations) get mappings of their own rather than
  growing the arenas;
- a periodic `malloc_trim(0)` (`Trimmer`): returns the free pages inside every arena to the system.

Measured side by side (two soaks at once, with and without these and the bank's DuckDB memory limit):
bench/results/soak_allocator.json: both still grow (17.9 vs 20.3 MB/min after the first minute; last sample 1,217
vs 1,294 MB): a small gain, not the cure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import threading
from functools import lru_cache

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters (malloc.h)


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_arenas(n: int) -> bool:
    """Let malloc create at most `n` arenas from now on (0: glibc's default). Returns whether it took effect."""
    libc = _glibc()
    if n <= 0 or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, int(n)))


def fix_mmap_threshold(nbytes: int) -> bool:
    """Serve every allocation of `nbytes` or more with its own mmap, returned to the system when freed (0: glibc's
    default, a threshold that rises to 32 MiB after the first large free, so a forward pass's multi-MB activations
    are then carved out of the arenas and fragment them). Returns whether it took effect."""
    libc = _glibc()
    if nbytes <= 0 or libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))


def trim() -> bool:
    """Return the free pages of every malloc arena to the system. Returns whether any memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class Trimmer:
    """A daemon thread calling `trim()` every `interval_s` seconds until `stop()`.

    Usage::

        trimmer = Trimmer(30.0).start()
        ...
        trimmer.stop()
    """

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self.trims = 0  # how many trims ran (tests, logs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loragen-malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        if _glibc() is None:
            log.info("malloc_trim is glibc's; this platform's allocator is left as it is")
            return self
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trim()
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
