"""Hypernetwork checkpoints: `config.json` (config, adapter layout, provenance) + `model.safetensors` (weights).

Never a pickle: loading reads JSON and safetensors only, so a checkpoint from anywhere is safe to open. Loading
checks the checkpoint against what the caller needs (base model, target modules) and says what to do on mismatch.

Usage::

    save_checkpoint(model, config, "ckpt/", extra={"bank": "bank.duckdb"})
    model, config, meta = load_checkpoint("ckpt/", base_model="sentence-transformers/all-MiniLM-L6-v2")
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
FORMAT_VERSION = 1
TRAIN_COMMAND = "loragen train hypernet --bank BANK"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "check_compatible", "default_checkpoint_dir",
           "load_checkpoint", "read_checkpoint_meta", "save_checkpoint"]


def default_checkpoint_dir() -> Path:
    """The default CVAE checkpoint: `<loragen home>/hypernet`."""
    return paths.checkpoint_dir("hypernet")


def save_checkpoint(model: CVAE, config: HypernetConfig, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then rename).

    Args:
        model: the trained CVAE (its normalisation/whitening buffers are part of the weights).
        config: the config it was built from.
        path: the directory to write (replaced if it is a checkpoint already).
        extra: JSON-serialisable provenance (bank path, tasks trained on, text encoder, metrics).

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    meta = {"hypernet": config.to_dict(), "layout": model.layout.to_dict(), "extra": extra or {}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return files.write_checkpoint(path, tensors, meta, format_name=FORMAT, format_version=FORMAT_VERSION)


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
    state = files.load_weights(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: weights do not load into the configured model ({err})") \
            from None
    return model.eval(), config, meta
