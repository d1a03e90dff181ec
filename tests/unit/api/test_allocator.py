"""The server's allocator hygiene: fewer malloc arenas and a periodic malloc_trim (glibc only)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import time

import pytest

from loragen.api import allocator
from loragen.api.settings import Settings

glibc_only = pytest.mark.skipif(allocator._glibc() is None, reason="malloc_trim and mallopt are glibc's")


@glibc_only
def test_trim_returns_the_free_pages_inside_the_heap():
    libc = allocator._glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(4096)]  # 16 MiB of small blocks (below the mmap threshold)
    try:
        for block in blocks[:-1]:  # the last one pins the top of the heap: glibc cannot shrink it by itself
            libc.free(block)
        assert allocator.trim()  # 16 MiB of free pages inside the heap: something is released
    finally:
        libc.free(blocks[-1])


@glibc_only
def test_arena_limit_takes_effect_and_zero_keeps_the_default():
    assert allocator.limit_arenas(2)
    assert not allocator.limit_arenas(0)
    assert not allocator.fix_mmap_threshold(0)


# In a fresh interpreter: free an 8 MiB block (glibc's dynamic threshold then rises to 8 MiB), then allocate 4 MiB
# and report whether it got a mapping of its own (mallinfo2's hblkhd grew by it).
_MMAP_PROBE = """
import ctypes, sys
from loragen.api import allocator
libc = allocator._glibc()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    assert allocator.fix_mmap_threshold(1 << 20)
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(4 << 20)
print(libc.mallinfo2().hblkhd - before >= (4 << 20))
"""


@glibc_only
@pytest.mark.parametrize("mode, mapped", [("default", False), ("fixed", True)])
def test_a_fixed_mmap_threshold_keeps_large_blocks_out_of_the_heap(mode, mapped):
    out = subprocess.run([sys.executable, "-c", _MMAP_PROBE, mode], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(mapped)


def test_trimmer_runs_on_its_interval_until_stopped():
    with pytest.raises(ValueError, match="interval_s"):
        allocator.Trimmer(0)
    trimmer = allocator.Trimmer(0.01).start()
    if allocator._glibc() is None:
        trimmer.stop()
        assert trimmer.trims == 0
        return
    deadline = time.monotonic() + 10
    while trimmer.trims < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    done = trimmer.trims
    assert done >= 3 and not trimmer._thread.is_alive()
    time.sleep(0.05)
    assert trimmer.trims == done  # stopped means stopped


def test_settings_refuse_negative_allocator_values():
    with pytest.raises(ValueError) as err:
        Settings(malloc_arena_max=-1, malloc_mmap_threshold=-1, malloc_trim_interval_s=-5)
    for name in ("LORAGEN_MALLOC_ARENA_MAX", "LORAGEN_MALLOC_MMAP_THRESHOLD", "LORAGEN_MALLOC_TRIM_INTERVAL_S"):
        assert name in str(err.value)
    off = Settings.from_env({"LORAGEN_MALLOC_ARENA_MAX": "0", "LORAGEN_MALLOC_TRIM_INTERVAL_S": "0"})
    assert (off.malloc_arena_max, off.malloc_trim_interval_s) == (0, 0.0)
