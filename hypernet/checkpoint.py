"""Hypernetwork checkpoints: `config.json` (config, adapter layout, provenance) + `model.safetensors` (weights).

Never a pickle: loading reads JSON and safetensors only, so a checkpoint from anywhere is safe to open. Loading
checks the checkpoint against what the caller needs (base model, target modules) and says what to do on mismatch.

A compact checkpoint (`compact_checkpoint`, for shipping) stores the large tensors in fp16 and the readout as a
truncated SVD of its map (hypernet.readout); when that does not fit the size budget, the readout is stored as
integer codes (`bank._codes`: 8 or 4 bits per row, chosen to lose the least of the map). `config.json`'s "storage"
records the dtype, the readout's width and the coded tensors' shapes; loading shapes the model to match, decodes,
and computes in fp32. Compact checkpoints are format version 3 (2 had no codes; an older loragen refuses 3 and says
to upgrade); a full-precision checkpoint is still written as version 1.

Usage::

    save_checkpoint(model, config, "ckpt/", extra={"bank": "bank.duckdb"})
    model, config, meta = load_checkpoint("ckpt/", base_model="sentence-transformers/all-MiniLM-L6-v2")
    compact_checkpoint("ckpt/", "small/", max_mb=25)  # fp16 plus 8/4-bit codes for the readout
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from loragen.bank import _checkpoint as files
from loragen.bank import _codes
from loragen.bank import paths
from loragen.bank._checkpoint import CONFIG_NAME, WEIGHTS_NAME
from loragen.bank.errors import CheckpointError
from loragen.hypernet.condition import CHANNELS
from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.model import CVAE

FORMAT = "loragen-hypernet-cvae"
FORMAT_VERSION = 3  # 2: compact storage ("storage" in config.json), 3: + integer codes; full precision is 1
_FULL_VERSION = 1
DEFAULT_ENERGY = 0.999999  # share of the readout map's energy kept by default: relative error about sqrt(1 - share)
TRAIN_COMMAND = "loragen train hypernet --bank BANK"

__all__ = ["CONFIG_NAME", "FORMAT", "FORMAT_VERSION", "WEIGHTS_NAME", "Compaction", "check_compatible",
           "compact_checkpoint", "compact_model", "default_checkpoint_dir", "load_checkpoint", "read_checkpoint_meta",
           "save_checkpoint", "stored_bytes"]


def default_checkpoint_dir() -> Path:
    """The default CVAE checkpoint: `<loragen home>/hypernet`."""
    return paths.checkpoint_dir("hypernet")


def save_checkpoint(model: CVAE, config: HypernetConfig, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None, dtype: str = "float32",
                    widths: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint directory atomically (temporary sibling, then rename).

    Args:
        model: the trained CVAE (its normalisation/whitening buffers are part of the weights).
        config: the config it was built from.
        path: the directory to write (replaced if it is a checkpoint already).
        extra: JSON-serialisable provenance (bank path, tasks trained on, text encoder, metrics).
        dtype: "float32", or "float16" for compact storage (see `bank._checkpoint.to_storage_dtype`).
        widths: tensor name -> bits per row, for tensors stored as integer codes (`bank._codes`; compact only).

    Raises:
        CheckpointError: `path` is a non-empty directory that is not a checkpoint.
    """
    widths = widths or {}
    meta = {"hypernet": config.to_dict(), "layout": model.layout.to_dict(), "extra": extra or {}}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors, kept = files.to_storage_dtype({k: v for k, v in state.items() if k not in widths}, dtype)
    coded, shapes = files.encode_tensors({k: state[k] for k in widths}, widths)
    rank = model.readout.rank if model.readout is not None else None
    compact = dtype != "float32" or bool(widths) or (rank is not None and rank != config.model.readout_rank)
    meta["storage"] = {"dtype": dtype, "readout_rank": rank, **({"float32": kept} if compact else {}),
                       **({"codes": shapes} if shapes else {})}
    version = FORMAT_VERSION if compact else _FULL_VERSION
    return files.write_checkpoint(path, {**tensors, **coded}, meta, format_name=FORMAT, format_version=version)


@dataclass
class Compaction:
    """What `compact_model` did: the readout's kept rank and energy share, and the bits per row of coded tensors."""

    readout_rank: int
    readout_energy: float
    widths: dict[str, torch.Tensor] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: rank, energy and, per coded tensor, how many rows got each width."""
        return {"readout_rank": self.readout_rank, "readout_energy": self.readout_energy,
                "coded_rows": {name: {str(b): int((bits == b).sum()) for b in _codes.WIDTHS}
                               for name, bits in self.widths.items()}}


_HEADER_BYTES = 32_768  # safetensors header and config.json, reserved out of a size budget


def stored_bytes(tensors: dict[str, torch.Tensor]) -> int:
    """Bytes `tensors` take in a compact checkpoint without codes (fp16 where `to_storage_dtype` allows)."""
    return sum(t.numel() * t.element_size() for t in files.to_storage_dtype(tensors, "float16")[0].values())


def compact_model(model: CVAE, max_rank: int | None = None, energy: float = DEFAULT_ENERGY,
                  max_bytes: int | None = None) -> Compaction:
    """Compress the model's readout in place (see `RidgeReadout.compress`) and, if fp16 storage does not fit
    `max_bytes`, choose integer codes for it (`bank._codes`).

    Codes, when needed: the readout's map rows that are exactly zero (channels or class slots no training task
    used) are dropped and the others get 8 bits; each basis row (one component) gets 8 or 4 bits or is dropped,
    whichever loses the least of the map maps @ basis for the bytes left (a basis row's error weighs by its
    component's squared norm in the maps: after `compress` the components are orthogonal, so errors add).

    Args:
        model: a trained CVAE.
        max_rank: at most this many readout components.
        energy: keep the fewest components holding this share of the readout map's energy.
        max_bytes: the size the stored weights must fit in.

    Returns:
        The rank and energy kept, and the widths of the tensors to store as codes (empty when fp16 fits).

    Raises:
        CheckpointError: `max_bytes` is too small for even the tensors that are not coded.
    """
    readout = model.readout
    if readout is None:
        return Compaction(0, 1.0)
    rank, kept = readout.compress(max_rank, energy)
    coded = ("readout.maps", "readout.basis")
    state = model.state_dict()
    others = stored_bytes({k: v for k, v in state.items() if k not in coded})
    if max_bytes is None or others + stored_bytes({k: state[k] for k in coded}) + _HEADER_BYTES <= max_bytes:
        return Compaction(rank, kept)
    maps = readout.maps.reshape(-1, rank)
    map_bits = torch.where(maps.abs().amax(1) > 0, 8, 0)
    left = max_bytes - _HEADER_BYTES - others - int(map_bits.gt(0).sum()) * _codes.row_bytes(rank, 8)
    if left < 0:
        raise CheckpointError(f"{max_bytes / 1e6:.1f} MB cannot hold this CVAE even without its readout basis "
                              f"(needs {(max_bytes - left) / 1e6:.1f} MB); raise the size budget (--max-mb)")
    weights = _component_weights(model)
    errors = {b: _codes.row_errors(readout.basis, b) for b in _codes.WIDTHS}
    basis_bits = _codes.allocate(weights, errors, readout.basis.shape[1], left)
    return Compaction(rank, kept, {"readout.maps": map_bits, "readout.basis": basis_bits})


def _component_weights(model: CVAE) -> torch.Tensor:
    """(rank,) expected squared coefficient of each readout component, summed over condition patterns: what a unit
    of error in that basis row costs for a typical request.

    A request's features are slot embeddings per channel, the global embedding and a 1 (`RidgeReadout.features`);
    their first and second moments are the condition encoder's whitening statistics, recorded at training
    (`Whitener`: mean, and transform = (Σ + εI)^-1/2). So E[c_k²] = (mᵀM_k)² + Σ_blocks |Σ_b^1/2 M_k,b|², block by
    block, with no data needed. A checkpoint trained without whitening has identity statistics: the weights are then
    the components' squared norms (isotropic features).
    """
    readout, white = model.readout, model.condition.whiteners
    n_ch, dim, rank = len(CHANNELS), readout.text_dim, readout.rank
    maps = readout.maps.double()  # (P, F, K)
    blocks = [(s * n_ch + c) * dim for s in range(readout.max_slots) for c in range(n_ch)]
    stats = [white[c] for _ in range(readout.max_slots) for c in range(n_ch)] + [white[-1]]
    starts = blocks + [readout.max_slots * n_ch * dim]
    mean = torch.cat([w.mean.double() for w in stats] + [torch.ones(1, dtype=torch.float64)])  # (F,)
    weights = (mean @ maps).pow(2).sum(0)  # (K,): the mean request's coefficients
    for start, w in zip(starts, stats):
        root = torch.linalg.inv(w.transform.double())  # (Σ + εI)^1/2, symmetric
        weights += (root @ maps[:, start : start + dim]).pow(2).sum((0, 1))
    return weights


def compact_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, max_rank: int | None = None,
                       energy: float = DEFAULT_ENERGY, max_mb: float | None = None) -> dict[str, Any]:
    """Write a compact copy of checkpoint `src` to `dst` (fp16 storage, compressed readout, integer codes for the
    readout when fp16 does not fit `max_mb`).

    Returns:
        {"bytes_before", "bytes_after", "readout_rank", "readout_energy", "coded_rows", "float32"} (tensors kept
        in fp32).

    Raises:
        CheckpointError: `src` is not a readable CVAE checkpoint, `dst` a non-empty non-checkpoint folder, or
            `max_mb` too small.
    """
    model, config, meta = load_checkpoint(src)
    max_bytes = int(max_mb * 1e6) if max_mb is not None else None
    done = compact_model(model, max_rank, energy, max_bytes)
    extra = {**meta.get("extra", {}), "compacted_from": {"loragen_version": meta.get("loragen_version"),
                                                         "created_at": meta.get("created_at")}}
    save_checkpoint(model, config, dst, extra=extra, dtype="float16", widths=done.widths)
    stored = read_checkpoint_meta(dst)["storage"]
    return {"bytes_before": files.checkpoint_bytes(src), "bytes_after": files.checkpoint_bytes(dst),
            **done.summary(), "float32": stored["float32"]}


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
    storage = meta.get("storage") if isinstance(meta.get("storage"), dict) else {}
    rank = storage.get("readout_rank")
    if model.readout is not None and isinstance(rank, int) and rank != model.readout.rank:
        model.readout.resize(rank)  # a compact checkpoint: its readout was compressed to `rank` components
    state = files.to_float32(files.decode_tensors(files.load_weights(path), storage.get("codes", {}), str(path)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path / WEIGHTS_NAME}: weights do not load into the configured model ({err})") \
            from None
    return model.eval(), config, meta
