"""ABMLL checkpoints: `config.json` (config, layout, provenance) + `model.safetensors` (guide parameters, floor).

The same format rules as the hypernetwork's (`bank/_checkpoint.py`): never a pickle, written at once, format and
version checked on load, errors that name the path and `loragen train meta`.

Usage::

    save_checkpoint(model, guide, config, "ckpt/abmll", extra={"tasks": [...]})
    model, guide, config, meta = load_checkpoint("ckpt/abmll", classifier=clf)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from loragen.bank import _checkpoint as files
from loragen.bank import paths
from loragen.bank._checkpoint import CONFIG_NAME, WEIGHTS_NAME
from loragen.bank.errors import CheckpointError, ConfigError
from loragen.bank.tasks import BUILTIN
from loragen.meta.config import MetaConfig
from loragen.meta.guide import ABMLLGuide
from loragen.meta.likelihood import CLASSIFIER, LikelihoodSpec
from loragen.meta.model import ABMLLModel, FactorClassifier, LoraLayout

FORMAT = "loragen-meta-abmll"
FORMAT_VERSION = 2  # 1: abmll.json + abmll.safetensors, before both generators shared one checkpoint format
TRAIN_COMMAND = "loragen train meta --bank BANK"
_LEGACY_CONFIG = "abmll.json"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "default_checkpoint_dir", "likelihood_spec",
           "load_checkpoint", "read_checkpoint_meta", "save_checkpoint"]


def default_checkpoint_dir() -> Path:
    """The default ABMLL checkpoint: `<loragen home>/meta`."""
    return paths.checkpoint_dir("meta")


def save_checkpoint(model: ABMLLModel, guide: ABMLLGuide, config: MetaConfig, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None, likelihood: LikelihoodSpec | None = None) -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then rename).

    Args:
        model: the ABMLL model (its weight floor is stored; the classifier is not).
        guide: the trained guide (every parameter and buffer is stored).
        config: the config it was built and trained with.
        path: the directory to write (replaced if it is a checkpoint already).
        extra: JSON-serialisable provenance (tasks trained on, encoder, ELBO history).
        likelihood: the likelihood it was trained with (kind, base model; `likelihood_spec` reads it back).

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    tensors = {f"guide.{k}": v.detach().contiguous().cpu() for k, v in guide.state_dict().items()}
    tensors["model.floor"] = model.floor.detach().cpu().contiguous()
    meta = {"meta": config.to_dict(), "layout": model.layout.to_dict(), "extra": extra or {}}
    if likelihood is not None:
        meta["likelihood"] = likelihood.to_dict()
    return files.write_checkpoint(path, tensors, meta, format_name=FORMAT, format_version=FORMAT_VERSION)


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.json, validated for files, format and version.

    Raises:
        CheckpointError: missing directory or files (naming the path and `loragen train meta`), pickled weights
            only, a foreign format or the older abmll.json layout, or a format version newer than this loragen reads.
    """
    path = Path(path)
    if (path / _LEGACY_CONFIG).is_file() and not (path / CONFIG_NAME).exists():
        raise CheckpointError(f"{path}: an ABMLL checkpoint in the older {_LEGACY_CONFIG} layout (format version 1); "
                              f"this loragen reads {CONFIG_NAME} + {WEIGHTS_NAME}: retrain it with "
                              f"`{TRAIN_COMMAND} -o {path}`")
    return files.read_checkpoint_meta(path, format_name=FORMAT, format_version=FORMAT_VERSION, what="ABMLL",
                                      train_command=TRAIN_COMMAND)


def likelihood_spec(meta: dict[str, Any]) -> LikelihoodSpec:
    """The likelihood a checkpoint was trained with (one written before it was recorded: the built-in suite's
    classifier, the only likelihood there was).

    Raises:
        CheckpointError: a malformed record.
    """
    if "likelihood" not in meta:
        return LikelihoodSpec(CLASSIFIER, str(meta["layout"]["base_model"]), provider=BUILTIN)
    try:
        return LikelihoodSpec.from_dict(meta["likelihood"])
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"the checkpoint's likelihood record {meta['likelihood']!r} is invalid ({err}); "
                              f"retrain it with `{TRAIN_COMMAND}`") from None


def load_checkpoint(path: str | os.PathLike, classifier: FactorClassifier | None = None,
                    device: str | torch.device = "cpu") -> tuple[ABMLLModel, ABMLLGuide, MetaConfig, dict[str, Any]]:
    """Rebuild model and guide from `save_checkpoint`'s files.

    Args:
        path: the checkpoint directory.
        classifier: needed only for the likelihood (training, refinement with examples).
        device: where the model and guide go.

    Returns:
        (model, guide in eval mode, config, meta) with meta the parsed config.json.

    Raises:
        CheckpointError: see `read_checkpoint_meta`, or weights that do not fit the configured model.
    """
    path = Path(path)
    meta = read_checkpoint_meta(path)
    config = MetaConfig.from_dict(meta["meta"])
    layout = LoraLayout.from_dict(meta["layout"])
    tensors = files.load_weights(path, device=str(device))
    if "model.floor" not in tensors:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: no model.floor tensor; not an ABMLL checkpoint's weights")
    try:
        model = ABMLLModel(layout, tensors["model.floor"], classifier, config.model, config.train.beta,
                           config.train.gamma)
        guide = ABMLLGuide(model)
        guide.load_state_dict({k.removeprefix("guide."): v for k, v in tensors.items() if k.startswith("guide.")})
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: weights do not load into the configured model ({err})") \
            from None
    return model.to(device), guide.to(device).eval(), config, meta
