"""Compact generator checkpoints for shipping, and measure what compaction changed.

`compact` writes a small copy of a CVAE or ABMLL checkpoint (whichever `config.json` names): fp16 storage, the
CVAE's readout as a truncated SVD (as 8/4-bit codes when fp16 does not fit the size budget), no recomputable buffers (`hypernet.checkpoint.compact_checkpoint`,
`meta.checkpoint.compact_checkpoint`). `adapter_difference` then loads both and generates for a few descriptions
with the same seed: the largest relative ΔW difference over modules and descriptions says what was lost.

Usage::

    report = compact("runs/hypernet", "shipped/hypernet", max_mb=25)
    report["max_relative_difference"]  # e.g. 4e-4
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loragen.bank.errors import CheckpointError

# Descriptions compaction is checked on when none are given: one per suite family wording, plain classification.
CHECK_DESCRIPTIONS: tuple[str, ...] = (
    "label 0 if the text is written in English, label 1 if it is written in German",
    "label 0 if the text is written in Polish, label 1 if it is written in Czech",
    "the answer is 1 when the text is Spanish and 0 when it is French",
    "Which language is this, Italian or Dutch? Answer 0 for Italian, 1 for Dutch.",
)
_FORMATS = {"loragen-hypernet-cvae": "cvae", "loragen-meta-abmll": "abmll"}


def checkpoint_method(path: str | os.PathLike) -> str:
    """"cvae" or "abmll": the generator a checkpoint directory holds (from its config.json's format).

    Raises:
        CheckpointError: no readable config.json, or a format that is neither.
    """
    config = Path(path) / "config.json"
    try:
        fmt = json.loads(config.read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{config}: not a readable generator checkpoint ({err}); pass a directory written "
                              "by `loragen train hypernet` or `loragen train meta`") from None
    if fmt not in _FORMATS:
        raise CheckpointError(f"{path}: format {fmt!r} is neither a CVAE nor an ABMLL checkpoint")
    return _FORMATS[fmt]


def load_generator(method: str, path: str | os.PathLike, encode: Any = None, classifier: Any = None):
    """The `AdapterGenerator` of checkpoint `path` (`encode`: the CVAE's text encoder, default its recorded one;
    `classifier`: the one ABMLL refines with, default its recorded likelihood's)."""
    if method == "cvae":
        from loragen.hypernet.generate import CVAEGenerator

        return CVAEGenerator.from_checkpoint(path, encode=encode)
    from loragen.meta.generate import ABMLLGenerator

    return ABMLLGenerator.from_checkpoint(path, classifier=classifier)


def adapter_difference(reference, other, descriptions: Sequence[str] = CHECK_DESCRIPTIONS, seed: int = 0) -> float:
    """Max over descriptions and modules of |ΔW_other - ΔW_ref| / |ΔW_ref| (Frobenius), same request and seed.

    Args:
        reference, other: two generators for the same base model (e.g. full-precision and compact).
        descriptions: task descriptions to generate for (one adapter each, the point estimate).
        seed: the request seed.
    """
    from loragen.bank.generator import GenerationRequest

    layout = reference.layout if hasattr(reference, "layout") else reference.model.layout
    base = layout.base_model
    worst = 0.0
    for text in descriptions:
        request = GenerationRequest(description=text, base_model=base, seed=seed)
        [a], [b] = reference.generate(request), other.generate(request)
        for module in a.modules:
            ref = a.delta_weight(module)
            worst = max(worst, float((b.delta_weight(module) - ref).norm() / ref.norm().clamp_min(1e-30)))
    return worst


def compact(src: str | os.PathLike, dst: str | os.PathLike, *, max_rank: int | None = None,
            energy: float | None = None, max_mb: float | None = None,
            descriptions: Sequence[str] = CHECK_DESCRIPTIONS, encode: Any = None) -> dict[str, Any]:
    """Write a compact copy of checkpoint `src` to `dst` and measure it against `src`.

    Args:
        src: a CVAE or ABMLL checkpoint directory.
        dst: where the compact copy goes (replaced if it is a checkpoint).
        max_rank, energy, max_mb: the CVAE readout's rank cap, retained-energy share, and the checkpoint's size
            budget (ignored for ABMLL, which has no readout; the shipped one is 15 MB in fp16).
        descriptions: what the generated adapters are compared on.
        encode: the CVAE's text encoder (default: the one the checkpoint records).

    Returns:
        {"method", "bytes_before", "bytes_after", "max_relative_difference", ...the method's own entries}.
    """
    method = checkpoint_method(src)
    if method == "cvae":
        from loragen.hypernet.checkpoint import DEFAULT_ENERGY, compact_checkpoint

        report = compact_checkpoint(src, dst, max_rank, DEFAULT_ENERGY if energy is None else energy, max_mb)
    else:
        from loragen.meta.checkpoint import compact_checkpoint

        report = compact_checkpoint(src, dst)
    diff = adapter_difference(load_generator(method, src, encode), load_generator(method, dst, encode), descriptions)
    return {"method": method, **report, "max_relative_difference": diff}
