"""`CVAEGenerator`: description (+ label names, + labelled examples) -> LoRA adapters, from a trained checkpoint.

Implements `bank.generator.AdapterGenerator`. With n_samples == 1 it decodes the latent mean (z = 0, the point
estimate); with more it decodes that many prior samples, reproducibly for a seed.

Usage::

    gen = CVAEGenerator.from_checkpoint("ckpt/")
    [adapter] = gen.generate("label 0 if the text is written in Polish, label 1 if it is written in Czech")
    save_peft(adapter, "out/pl-cs")
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.describe import label_indices
from loragen.bank.errors import ConfigError
from loragen.bank.generator import GenerationRequest, save_adapters
from loragen.bank.lora.adapter import LoraAdapter
from loragen.hypernet.checkpoint import check_compatible, default_checkpoint_dir, load_checkpoint
from loragen.hypernet.condition import TextEncode, collate_conditions, condition_texts, embed_conditions
from loragen.hypernet.config import HypernetConfig
from loragen.hypernet.model import CVAE


class CVAEGenerator:
    """Generate adapters with a trained ICM-LoRA CVAE.

    Args:
        model: the trained CVAE (eval mode).
        config: its config.
        encode: texts -> (n, D) L2-normalised embeddings; must be the encoder it was trained with.
        source: where the model came from (recorded in the adapters' metadata).
        cache_size: text embeddings kept in the LRU cache.
        task_kinds: the kinds of tasks it was trained on ("classification", "generation"): a generation-only
            model reads descriptions as free text, without label slots.
        channels: which optional channels ("labels", "examples") it learnt; a request using one it did not is
            refused (`from_checkpoint` reads this from the checkpoint).
    """

    name = "cvae"

    def __init__(self, model: CVAE, config: HypernetConfig, encode: TextEncode, source: str = "",
                 cache_size: int = 4096, task_kinds: Sequence[str] = ("classification",),
                 channels: dict[str, bool] | None = None) -> None:
        self.model, self.config, self.source = model.eval(), config, source
        self.encode = _LRUEncode(encode, cache_size)  # class names and wordings repeat across requests
        self.layout = model.layout
        self.task_kinds = tuple(task_kinds)
        self.channels = dict(channels or {})  # optional channels the model learnt; unnamed ones are allowed

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, base_model: str | None = None,
                        encode: TextEncode | None = None) -> CVAEGenerator:
        """Load from a checkpoint directory (default: `default_checkpoint_dir()`).

        Raises:
            CheckpointError: missing/invalid checkpoint, or one for another base model.
        """
        path = Path(path) if path is not None else default_checkpoint_dir()
        base = canonical_base_model_id(base_model) if base_model is not None else None
        model, config, meta = load_checkpoint(path, base_model=base)
        if encode is None:
            from loragen.hypernet._text import default_text_encode

            encode = default_text_encode(meta.get("extra", {}).get("text_encoder"))
        extra = meta.get("extra", {})
        return cls(model, config, encode, source=str(path), task_kinds=extra.get("task_kinds", ("classification",)),
                   channels=extra.get("channels") or fitted_channels(model))

    def generate(self, request: GenerationRequest | str, labels: Sequence[str] | None = None,
                 examples: Sequence[tuple[str, int]] | None = None, n_samples: int = 1,
                 seed: int | None = None) -> list[LoraAdapter]:
        """Adapters for one request: a `GenerationRequest`, or a description plus the other arguments.

        Raises:
            ValueError: an invalid request (empty/huge description, bad labels/examples, too many classes).
            ConfigError: label names or examples for a checkpoint that was never trained with them.
            UnknownBaseModelError / CheckpointError: a base model this checkpoint does not generate for.
        """
        if isinstance(request, str):
            request = GenerationRequest(
                description=request, labels=tuple(labels) if labels is not None else None,
                examples=tuple(examples) if examples is not None else None, n_samples=n_samples, seed=seed,
                base_model=self.layout.base_model,
            )
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[list[LoraAdapter]]:
        """Adapters for many requests in one encoder call and one decoder pass (same n_samples for all)."""
        if not requests:
            return []
        n = requests[0].n_samples
        if any(r.n_samples != n for r in requests):
            raise ValueError("generate_batch needs the same n_samples for every request; call it per group")
        for r in requests:
            check_compatible(self.layout, canonical_base_model_id(r.base_model), None, self.source)
            self._check_channels(r)
        tokens = self._sample(requests, n)  # (B, n, M, T)
        out = []
        for r, per_request in zip(requests, tokens):
            out.append([self._adapter(r, t, i) for i, t in enumerate(per_request)])
        return out

    def _check_channels(self, request: GenerationRequest) -> None:
        """Refuse label names or examples when the checkpoint never learnt to read them (they would be ignored, or
        worse: an unfitted readout map returns the mean adapter whatever the description says)."""
        retrain = ("retrain on a bank whose tasks have {what} (`loragen bank tasks import MANIFEST`, then "
                   "`loragen train hypernet --bank BANK`)")
        if request.labels and not self.channels.get("labels", True):
            raise ConfigError(f"this hypernet checkpoint ({self.source}) was trained without label names (its tasks "
                              f"are {'/'.join(self.task_kinds)} tasks): drop --labels (labels=), or "
                              + retrain.format(what="label names"))
        if request.generation_examples:
            raise ConfigError(f"the CVAE ({self.source}) reads labelled (text, label) examples only, not (input, "
                              "output) pairs of a generation task: drop --examples (examples=), or use --method "
                              "abmll, which refines its posterior on such pairs")
        if request.examples and not self.channels.get("examples", True):
            raise ConfigError(f"this hypernet checkpoint ({self.source}) was trained without labelled examples: drop "
                              "--examples (examples=), or " + retrain.format(what="labelled examples stored"))

    def _label_slots(self, request: GenerationRequest) -> bool:
        """Whether a request gets label slots: always for a classification checkpoint; never for a generation one
        (free text only, as it was trained); for a mixed one when the request names labels or label indices."""
        if "generation" not in self.task_kinds:
            return True
        if "classification" not in self.task_kinds:
            return False
        return bool(request.labels or request.examples or label_indices(request.description))

    @torch.inference_mode()
    def _sample(self, requests: Sequence[GenerationRequest], n: int) -> torch.Tensor:
        cc = self.config.condition
        parsed = [condition_texts(r.description, r.labels, r.examples, cc.max_slots, self._label_slots(r))
                  for r in requests]
        batch = collate_conditions(embed_conditions(parsed, self.encode, cc.max_slots, cc.text_dim,
                                                     global_text=cc.global_text))
        seeds = [r.seed if r.seed is not None else random.randrange(2**31) for r in requests]
        if n == 1:
            return self.model.sample(batch, 1)
        # One generator per request, so a request's samples do not depend on what else is in the batch.
        return torch.cat([self.model.sample({k: v[i : i + 1] for k, v in batch.items()}, n,
                                            torch.Generator().manual_seed(s)) for i, s in enumerate(seeds)])

    def _adapter(self, request: GenerationRequest, tokens: torch.Tensor, index: int) -> LoraAdapter:
        meta: dict[str, Any] = {"generator": self.name, "description": request.description, "sample": index,
                                "n_samples": request.n_samples, "seed": request.seed, "checkpoint": self.source}
        if request.labels:
            meta["labels"] = list(request.labels)
        if request.examples:
            meta["n_examples"] = len(request.examples)
        adapter = self.model.space.to_adapter(tokens.clone(), meta)
        adapter.check_finite()  # never hand a NaN adapter to the bank or a user
        return adapter

    def export(self, adapters: Sequence[LoraAdapter], out: str | os.PathLike) -> list[Path]:
        """Write adapters as PEFT directories: `out` for one, `out/sample-<i>` for several (`save_adapters`)."""
        return save_adapters(adapters, out)


def fitted_channels(model: CVAE) -> dict[str, bool]:
    """Which optional channels a checkpoint without a record of them (written before it was recorded) learnt: a
    channel is fitted where its readout maps (or, without a readout, its whitener) moved from their initial zeros /
    identity."""
    from loragen.hypernet.condition import EXAMPLES, LABEL

    if model.readout is not None:
        maps = model.readout.maps  # (patterns, F, K); patterns: 0 description, 1 +labels, 2 +examples, 3 both
        return {"labels": bool(maps[1].any()), "examples": bool(maps[2].any())}
    white = model.condition.whiteners

    def moved(c: int) -> bool:
        return bool(white[c].mean.any()) or not torch.equal(white[c].transform, torch.eye(white[c].mean.numel()))

    return {"labels": moved(LABEL), "examples": moved(EXAMPLES)}


class _LRUEncode:
    """An LRU cache of text embeddings around an encoder (the text encoder dominates generation latency)."""

    def __init__(self, encode: TextEncode, size: int) -> None:
        from collections import OrderedDict

        self._encode, self._size = encode, size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = dict(zip(missing, np.asarray(self._encode(missing), dtype=np.float32))) if missing else {}
        with self._lock:
            out = []
            for t in texts:
                v = fresh.get(t)
                if v is None:
                    v = self._cache[t]
                    self._cache.move_to_end(t)
                out.append(v)
            for t, v in fresh.items():
                self._cache[t] = v
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)
