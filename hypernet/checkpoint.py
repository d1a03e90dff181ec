"""Hypernetwork checkpoints: `config.json` (config, adapter layout, provenance) + `model.safetensors` (weights).

Never a pickle: loading reads JSON and safetensors only, so a checkpoint from anywhere is safe to open. Loading
checks the checkpoint against what the caller needs (base model, target modules) and says what to do on mismatch.

A compact checkpoint (`compact_checkpoint`, for shipping) stores the large tensors in fp16 and the readout as a
truncated SVD of its map (hypernet.readout); `config.json`'s "storage" records the dtype and the readout's width,
and loading shapes the model to match and computes in fp32. It is format version 2 (an older loragen, which could
not shape its readout, refuses it and says to upgrade); a full-precision checkpoint is still written as version 1.

Usage::

    save_checkpoint(model, config, "ckpt/", extra={"bank": "bank.duckdb"})
    model, config, meta = load_checkpoint("ckpt/", base_model="sentence-transformers/all-MiniLM-L6-v2")
    compact_checkpoint("ckpt/", "small/", max_mb=25)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loragen.bank import _checkpoint as files
from loragen.bank import paths
from loragen.bank._checkpoint import CONFIG_NAME, WEIGHTS_NAME
from loragen.bank.errors import CheckpointError
from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.model import CVAE

FORMAT = "loragen-hypernet-cvae"
FORMAT_VERSION = 2  # 2: compact storage ("storage" in config.json); full-precision checkpoints are written as 1
_FULL_VERSION = 1
DEFAULT_ENERGY = 0.999999  # share of the readout map's energy kept by default: relative error about sqrt(1 - share)
TRAIN_COMMAND = "loragen train hypernet --bank BANK"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "check_compatible", "compact_checkpoint",
           "compact_model", "default_checkpoint_dir", "load_checkpoint", "read_checkpoint_meta", "save_checkpoint"]


def default_checkpoint_dir() -> Path:
    """The default CVAE checkpoint: `<loragen home>/hypernet`."""
    return paths.checkpoint_dir("hypernet")


def save_checkpoint(model: CVAE, config: HypernetConfig, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None, dtype: str = "float32") -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then rename).

    Args:
        model: the trained CVAE (its normalisation/whitening buffers are part of the weights).
        config: the config it was built from.
        path: the directory to write (replaced if it is a checkpoint already).
        extra: JSON-serialisable provenance (bank path, tasks trained on, text encoder, metrics).
        dtype: "float32", or "float16" for compact storage (see `bank._checkpoint.to_storage_dtype`).

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    meta = {"hypernet": config.to_dict(), "layout": model.layout.to_dict(), "extra": extra or {}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors, kept = files.to_storage_dtype(tensors, dtype)
    rank = model.readout.rank if model.readout is not None else None
    compact = dtype != "float32" or (rank is not None and rank != config.model.readout_rank)
    meta["storage"] = {"dtype": dtype, "readout_rank": rank, **({"float32": kept} if compact else {})}
    version = FORMAT_VERSION if compact else _FULL_VERSION
    return files.write_checkpoint(path, tensors, meta, format_name=FORMAT, format_version=version)


def compact_model(model: CVAE, max_rank: int | None = None, energy: float = DEFAULT_ENERGY,
                  max_bytes: int | None = None) -> tuple[int, float]:
    """Compress the model's readout in place (see `RidgeReadout.compress`) for fp16 storage.

    Args:
        model: a trained CVAE.
        max_rank: at most this many readout components.
        energy: keep the fewest components holding this share of the readout map's energy.
        max_bytes: also cap the rank so that the fp16 weights fit in this many bytes (when they can).

    Returns:
        (kept readout rank, share of its energy kept); (0, 1.0) for a model without a readout.
    """
    readout = model.readout
    if readout is None:
        return 0, 1.0
    if max_bytes is not None:
        others = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("readout."))
        per_rank = readout.maps.shape[0] * readout.n_features + readout.basis.shape[1]
        budget = max(1, (max_bytes // 2 - others) // per_rank)
        max_rank = budget if max_rank is None else min(max_rank, budget)
    return readout.compress(max_rank, energy)


def compact_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, max_rank: int | None = None,
                       energy: float = DEFAULT_ENERGY, max_mb: float | None = None) -> dict[str, Any]:
    """Write a compact copy of checkpoint `src` to `dst` (fp16 storage, compressed readout).

    Returns:
        {"bytes_before", "bytes_after", "readout_rank", "readout_energy", "float32"} (tensors kept in fp32).

    Raises:
        CheckpointError: `src` is not a readable CVAE checkpoint, or `dst` a non-empty non-checkpoint folder.
    """
    model, config, meta = load_checkpoint(src)
    max_bytes = int(max_mb * 1e6) if max_mb is not None else None
    rank, kept = compact_model(model, max_rank, energy, max_bytes)
    extra = {**meta.get("extra", {}), "compacted_from": {"loragen_version": meta.get("loragen_version"),
                                                         "created_at": meta.get("created_at")}}
    save_checkpoint(model, config, dst, extra=extra, dtype="float16")
    stored = read_checkpoint_meta(dst)["storage"]
    return {"bytes_before": files.checkpoint_bytes(src), "bytes_after": files.checkpoint_bytes(dst),
            "readout_rank": rank, "readout_energy": kept, "float32": stored["float32"]}


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.json, validated for files, format and version.

    Raises:
        CheckpointError: missing directory or files (naming the path and `loragen train hypernet`), pickled weights
            only, a foreign format, or a format version newer than this loragen reads.
    """
    return files.read_checkpoint_meta(path, format_name=FORMAT, format_version=FORMAT_VERSION, what="hypernet",
                                      train_command=TRAIN_COMMAND)


def check_compatible(layout: AdapterLayout, base_model: str | None, target_modules: list[str] | tuple[str, ...] | None,
                     where: str = "") -> None:
    """Raise CheckpointError if the layout is for another base model or other target modules."""
    problems = []
    if base_model is not None and layout.base_model != base_model:
        problems.append(f"it generates adapters for base model {layout.base_model!r}, not {base_model!r}")
    if target_modules is not None and sorted(target_modules) != sorted(layout.target_modules):
        problems.append(f"it targets modules {list(layout.target_modules)}, not {sorted(target_modules)}")
    if problems:
        raise CheckpointError(f"hypernet checkpoint {where} does not match: " + "; ".join(problems)
                              + ". Train a checkpoint on a bank for this base model (`loragen train hypernet`).")


def load_checkpoint(path: str | os.PathLike, base_model: str | None = None,
                    target_modules: list[str] | tuple[str, ...] | None = None,
                    ) -> tuple[CVAE, HypernetConfig, dict[str, Any]]:
    """Load a checkpoint into an eval-mode CVAE on CPU.

    Args:
        path: the checkpoint directory.
        base_model: if given, the base model id the checkpoint must generate for.
        target_modules: if given, the short module names it must target.

    Returns:
        (model, config, meta) with meta the parsed config.json.

    Raises:
        CheckpointError: see `read_checkpoint_meta`, a base model / target mismatch, or weights that do not fit.
    """
    path = Path(path)
    meta = read_checkpoint_meta(path)
    saved = meta["hypernet"]
    if isinstance(saved.get("model"), dict) and "readout" not in saved["model"]:
        # Written before the readout existed: it was trained without one, so it must run without one.
        saved = {**saved, "model": {**saved["model"], "readout": False}}
    config = HypernetConfig.from_dict(saved)
    layout = AdapterLayout.from_dict(meta["layout"])
    check_compatible(layout, base_model, target_modules, str(path))
    model = CVAE(config, layout)
    rank = (meta.get("storage") or {}).get("readout_rank")
    if model.readout is not None and isinstance(rank, int) and rank != model.readout.rank:
        model.readout.resize(rank)  # a compact checkpoint: its readout was compressed to `rank` components
    state = files.to_float32(files.load_weights(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: weights do not load into the configured model ({err})") \
            from None
    return model.eval(), config, meta
