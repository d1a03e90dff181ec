"""Write a base model with adapters merged into it: the one implementation the CLI (`loragen merge`) and the
service (`POST /v1/merge`) share.

The merged model is written into a temporary sibling of the output folder and renamed into place, so a reader
(or a crash half way) sees either no folder or a complete transformers model with its tokenizer files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from loragen.bank._atomic import atomic_directory
from loragen.bank.base_model import copy_tokenizer_files, load_base_model
from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.merge import CombineMethod, merge

MODEL_CONFIG = "config.json"  # what every transformers model directory holds


def save_merged_model(
    adapters: LoraAdapter | Sequence[LoraAdapter],
    output: str | os.PathLike,
    *,
    base_model: str | os.PathLike | None = None,
    weights: Sequence[float] | None = None,
    method: CombineMethod = "linear",
    rank: int | None = None,
    density: float = 0.2,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | None = None,
) -> Path:
    """Merge `adapters` into a fresh copy of `base_model` and save it (`save_pretrained`) with its tokenizer files.

    Usage::

        save_merged_model([load_peft("a"), load_peft("b")], "merged/", weights=[0.5, 0.5])

    Args:
        adapters: one adapter or several (combined as in `merge`).
        output: the model directory to write. An existing one that holds a model (config.json) is replaced; any
            other non-empty directory is refused.
        base_model: a packaged base model's name or a local transformers directory (None: the default).
        weights, method, rank, density: how several adapters are combined (see `merge`).
        device: where the merge runs. dtype: dtype of the loaded (and saved) weights (default fp32).

    Returns:
        `output` as a Path.

    Raises:
        ConfigError: `output` exists and is not a model directory, or bad combination arguments.
        AdapterShapeError, NonFiniteError, UnknownBaseModelError: from loading and merging (nothing is written).
    """
    _check_output(Path(output))  # before the slow part; `atomic_directory` checks again when it renames
    model = load_base_model(base_model, dtype=dtype, device=device)  # a fresh copy: merging modifies it
    merge(model, adapters, weights, method=method, rank=rank, density=density, keep_original=False)
    with atomic_directory(output, MODEL_CONFIG, ConfigError) as tmp:
        model.save_pretrained(tmp)
        copy_tokenizer_files(base_model, tmp)
    return Path(output)


def _check_output(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: is a file; give a directory for the merged model.")
    if path.is_dir() and not (path / MODEL_CONFIG).exists() and any(path.iterdir()):
        raise ConfigError(f"{path}: exists and holds no model ({MODEL_CONFIG} missing); refusing to replace it. "
                          "Give a new or empty directory.")
