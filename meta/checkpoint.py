"""ABMLL checkpoints: `config.json` (config, layout, provenance) + `model.safetensors` (guide parameters, floor).

The same format rules as the hypernetwork's (`bank/_checkpoint.py`): never a pickle, written at once, format and
version checked on load, errors that name the path and `loragen train meta`.

A compact checkpoint (`compact_checkpoint`, for shipping) stores the large tensors in fp16 and leaves out the
guide's `unit` buffer (recomputed from the floor when the guide is built); it is format version 3, which an older
loragen refuses with "upgrade", while a full-precision checkpoint is still written as version 2.

Usage::

    save_checkpoint(model, guide, config, "ckpt/abmll", extra={"tasks": [...]})
    compact_checkpoint("ckpt/abmll", "small/abmll")
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
FORMAT_VERSION = 3  # 1: abmll.json + abmll.safetensors (before the shared format); 3: compact storage
FULL_VERSION = 2  # what a full-precision checkpoint is written as (any loragen since the shared format reads it)
_RECOMPUTED = ("guide.unit",)  # buffers the guide rebuilds from the floor: a compact checkpoint leaves them out
TRAIN_COMMAND = "loragen train meta --bank BANK"
_LEGACY_CONFIG = "abmll.json"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "FULL_VERSION", "WEIGHTS_NAME", "compact_checkpoint",
           "default_checkpoint_dir", "likelihood_spec", "load_checkpoint", "read_checkpoint_meta", "save_checkpoint"]


def default_checkpoint_dir() -> Path:
    """The default ABMLL checkpoint: `<loragen home>/meta`."""
    return paths.checkpoint_dir("meta")


def save_checkpoint(model: ABMLLModel, guide: ABMLLGuide, config: MetaConfig, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None, likelihood: LikelihoodSpec | None = None,
                    dtype: str = "float32") -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then rename).

    Args:
        model: the ABMLL model (its weight floor is stored; the classifier is not).
        guide: the trained guide (every parameter and buffer is stored).
        config: the config it was built and trained with.
        path: the directory to write (replaced if it is a checkpoint already).
        extra: JSON-serialisable provenance (tasks trained on, encoder, ELBO history).
        likelihood: the likelihood it was trained with (kind, base model; `likelihood_spec` reads it back).
        dtype: "float32", or "float16" for compact storage (fp16 tensors, recomputable buffers left out).

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    tensors = {f"guide.{k}": v.detach().contiguous().cpu() for k, v in guide.state_dict().items()}
    tensors["model.floor"] = model.floor.detach().cpu().contiguous()
    meta = {"meta": config.to_dict(), "layout": model.layout.to_dict(), "extra": extra or {}}
    if likelihood is not None:
        meta["likelihood"] = likelihood.to_dict()
    compact = dtype != "float32"
    if compact:
        tensors = {k: v for k, v in tensors.items() if k not in _RECOMPUTED}
        tensors, kept = files.to_storage_dtype(tensors, dtype)
        meta["storage"] = {"dtype": dtype, "float32": kept, "recomputed": list(_RECOMPUTED)}
    version = FORMAT_VERSION if compact else FULL_VERSION
    return files.write_checkpoint(path, tensors, meta, format_name=FORMAT, format_version=version)


def compact_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """Write a compact copy of ABMLL checkpoint `src` to `dst` (fp16 storage, recomputable buffers left out).

    Returns:
        {"bytes_before", "bytes_after", "float32"} (the tensors kept in fp32).

    Raises:
        CheckpointError: `src` is not a readable ABMLL checkpoint, or `dst` a non-empty non-checkpoint folder.
    """
    model, guide, config, meta = load_checkpoint(src)
    likelihood = likelihood_spec(meta) if "likelihood" in meta else None
    extra = {**meta.get("extra", {}), "compacted_from": {"loragen_version": meta.get("loragen_version"),
                                                         "created_at": meta.get("created_at")}}
    save_checkpoint(model, guide, config, dst, extra=extra, likelihood=likelihood, dtype="float16")
    return {"bytes_before": files.checkpoint_bytes(src), "bytes_after": files.checkpoint_bytes(dst),
            "float32": read_checkpoint_meta(dst)["storage"]["float32"]}


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
    saved = dict(meta["meta"])
    if isinstance(saved.get("generate"), dict) and "refine_optimizer" not in saved["generate"]:
        # saved before the option existed: it refines with Adam, as it did when it was evaluated
        saved["generate"] = {**saved["generate"], "refine_optimizer": "adam"}
    config = MetaConfig.from_dict(saved)
    layout = LoraLayout.from_dict(meta["layout"])
    tensors = files.to_float32(files.load_weights(path, device=str(device)))
    if "model.floor" not in tensors:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: no model.floor tensor; not an ABMLL checkpoint's weights")
    try:
        model = ABMLLModel(layout, tensors["model.floor"], classifier, config.model, config.train.beta,
                           config.train.gamma)
        guide = ABMLLGuide(model)
        state = {k.removeprefix("guide."): v for k, v in tensors.items() if k.startswith("guide.")}
        for name in _RECOMPUTED:  # left out of a compact checkpoint: the guide just rebuilt it from the floor
            state.setdefault(name.removeprefix("guide."), guide.state_dict()[name.removeprefix("guide.")])
        guide.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: weights do not load into the configured model ({err})") \
            from None
    return model.to(device), guide.to(device).eval(), config, meta
