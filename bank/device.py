"""Device and dtype resolution: the one place where strings from configs and the CLI become torch objects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from loragen.bank.errors import ConfigError

_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp64": torch.float64,
    "float64": torch.float64,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device` as a torch.device; `None` or "auto" picks CUDA when present, else CPU.

    Raises:
        ConfigError: CUDA was asked for but none is available.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} was requested but CUDA is not available; use 'cpu' or 'auto'.")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype = torch.float32) -> torch.dtype:
    """Turn a precision string ("fp32", "bf16", ...) or dtype into a torch.dtype.

    Raises:
        ConfigError: the string is not a known precision.
    """
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPES))}.")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """The short, serialisable name of a dtype ("float32", "bfloat16", ...)."""
    return str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with `n` intra-op threads (None: leave as is), restoring the previous count after.

    Small models (MiniLM on one sentence, tiny test shapes) are too small to split across threads: on a loaded
    2-core machine a one-sentence MiniLM forward took 144 ms with two threads (they wait at barriers), 7.6 ms with one.
    """
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
