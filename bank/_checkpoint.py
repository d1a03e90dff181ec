"""The checkpoint format both generators share: a directory with `config.json` and `model.safetensors`.

`config.json` carries the format name and version, the loragen version and time that wrote it, and whatever the
generator stores (its config, layout, provenance); `model.safetensors` the tensors. Never a pickle: reading parses
JSON and safetensors only, so a checkpoint from anywhere is safe to open. The directory is written at once (a
temporary sibling, then one rename), and reading checks the format and refuses a version newer than this
loragen, with errors that name the path and the command that makes a checkpoint.

`hypernet/checkpoint.py` and `meta/checkpoint.py` build on this; each adds what its model needs.

Compact storage (for shipped generators): `to_storage_dtype` stores the large floating tensors in fp16 where that
loses nothing measurable (each is checked: finite, inside fp16's range, relative round-trip error at most
`HALF_TOLERANCE`; the rest stay fp32), and `config.json` records it under "storage". Loaders compute in fp32.
Tensors too large even in fp16 can be stored as integer codes (`bank._codes`: a bit width per row, blockwise
scales): `encode_tensors` writes them, storage.codes records their shapes, `decode_tensors` restores them.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loragen.bank._atomic import atomic_directory
from loragen.bank.errors import CheckpointError

if TYPE_CHECKING:
    import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLES = ("*.ckpt", "*.pt", "*.pth", "*.bin", "*.pkl")
HALF_TOLERANCE = 1e-3  # relative Frobenius round-trip error a tensor may lose to fp16
_HALF_MIN_NUMEL = 4096  # smaller tensors cost little: they stay fp32


def loragen_version() -> str:
    """The installed loragen's version ("0+unknown" when running from a checkout that is not installed)."""
    try:
        from importlib.metadata import version

        return version("loragen")
    except Exception:  # not installed as a distribution
        return "0+unknown"


def write_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any], *,
                     format_name: str, format_version: int) -> Path:
    """Write `config.json` (`meta` stamped with format, versions and time) and `model.safetensors` atomically.

    Args:
        path: the checkpoint directory (replaced if it is a checkpoint already; anything else is never replaced).
        tensors: the weights (detached, contiguous, on CPU).
        meta: the generator's JSON-serialisable entries.
        format_name: the format name, e.g. "loragen-hypernet-cvae".
        format_version: the version readers check.

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    from safetensors.torch import save_file

    path = Path(path)
    stamped = {"format": format_name, "format_version": format_version, "loragen_version": loragen_version(),
               "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
    with atomic_directory(path, CONFIG_NAME, CheckpointError) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(stamped, indent=2, sort_keys=True) + "\n")
    return path


def read_checkpoint_meta(path: str | os.PathLike, *, format_name: str, format_version: int, what: str,
                         train_command: str) -> dict[str, Any]:
    """A checkpoint's `config.json`, checked for files, format and version.

    Args:
        path: the checkpoint directory.
        format_name, format_version: the format expected and the newest version this loragen reads.
        what: the generator's name in messages ("hypernet", "ABMLL").
        train_command: the command that writes such a checkpoint (`-o PATH` is appended in messages).

    Raises:
        CheckpointError: a missing directory or file (naming the path and the training command), pickled weights
            only, invalid JSON, another format, or a version newer than this loragen reads.
    """
    path = Path(path)
    make = f"train one with `{train_command} -o {path}`"
    if not path.is_dir():
        raise CheckpointError(f"{path}: no {what} checkpoint here; {make} or pass --checkpoint DIR")
    if not (path / WEIGHTS_NAME).is_file():
        pickles = sorted(p.name for pat in _PICKLES for p in path.glob(pat))
        hint = f" It holds {pickles}: pickled checkpoints are never loaded." if pickles else ""
        raise CheckpointError(f"{path}: no {what} checkpoint here (missing {WEIGHTS_NAME}).{hint} "
                              f"{make[0].upper()}{make[1:]}.")
    try:
        meta = json.loads((path / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {what} checkpoint here (missing {CONFIG_NAME}); {make}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / CONFIG_NAME}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: format {found!r} is not a {format_name} checkpoint; {make}")
    try:
        version = int(meta.get("format_version", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path / CONFIG_NAME}: format_version {meta.get('format_version')!r} is not a "
                              "number") from None
    if version > format_version:
        raise CheckpointError(f"{path}: format version {version} is newer than this loragen understands "
                              f"({format_version}); upgrade loragen (`pip install -U loragen`)")
    return meta


def load_weights(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory's `model.safetensors`.

    Raises:
        CheckpointError: the file is missing or not valid safetensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path) / WEIGHTS_NAME
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{file}: unreadable weights ({err})") from None


def to_storage_dtype(tensors: dict[str, torch.Tensor], dtype: str = "float16") -> tuple[dict[str, torch.Tensor],
                                                                                       list[str]]:
    """Tensors for compact storage: large floating ones in `dtype` when the round trip is within `HALF_TOLERANCE`.

    Args:
        tensors: the weights (fp32, on CPU).
        dtype: "float16" (compact) or "float32" (unchanged).

    Returns:
        (tensors to write, names of the floating tensors kept in fp32).
    """
    import torch

    if dtype == "float32":
        return tensors, sorted(k for k, v in tensors.items() if v.is_floating_point())
    half = getattr(torch, dtype)
    out, kept = {}, []
    for name, t in tensors.items():
        if not t.is_floating_point() or t.numel() < _HALF_MIN_NUMEL:
            out[name] = t
            kept += [name] if t.is_floating_point() else []
            continue
        low = t.to(half)
        norm = float(t.double().norm())
        err = float((low.double() - t.double()).norm()) / max(norm, 1e-300)
        if bool(torch.isfinite(low).all()) and err <= HALF_TOLERANCE:
            out[name] = low.contiguous()
        else:
            out[name], kept = t, [*kept, name]
    return out, sorted(kept)


def encode_tensors(tensors: dict[str, torch.Tensor], widths: dict[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """Replace each tensor named in `widths` by its integer codes (`bank._codes.encode`, one width per row).

    Returns:
        (tensors to write, name -> shape of each coded tensor: what `decode_tensors` needs, for storage.codes).
    """
    from loragen.bank import _codes

    out = {k: v for k, v in tensors.items() if k not in widths}
    shapes = {}
    for name, bits in widths.items():
        out.update(_codes.encode(name, tensors[name], bits))
        shapes[name] = list(tensors[name].shape)
    return out, shapes


def decode_tensors(stored: dict[str, torch.Tensor], shapes: dict[str, Any], where: str = ""
                   ) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint whose storage.codes is `shapes` (name -> shape), coded ones decoded to fp32.

    Raises:
        CheckpointError: malformed storage.codes, codes that do not fit their shape, or stray coded entries.
    """
    from loragen.bank import _codes

    if not isinstance(shapes, dict) or not all(
            isinstance(s, list) and s and all(isinstance(d, int) and 0 < d < 2**31 for d in s) for s in shapes.values()):
        raise CheckpointError(f"{where}: storage.codes in {CONFIG_NAME} is malformed (name -> list of dimensions)")
    out = {k: v for k, v in stored.items() if not _codes.is_code(k)}
    for name, shape in shapes.items():
        try:
            out[name] = _codes.decode(name, stored, shape)
        except ValueError as err:
            raise CheckpointError(f"{where}: {err}") from None
    stray = {k.split(_codes.SEP)[0] for k in stored if _codes.is_code(k)} - set(shapes)
    if stray:
        raise CheckpointError(f"{where}: coded tensors {sorted(stray)} are not listed in storage.codes")
    return out


def to_float32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp32 (what every loader computes in), others unchanged."""
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def checkpoint_bytes(path: str | os.PathLike) -> int:
    """The size of a checkpoint directory's files, in bytes."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
