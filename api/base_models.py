"""Which base model a command works with, and the base models loaded for applying adapters.

A command's base model is the one its input was made for: the generator checkpoint's (`generate`) or the
adapter's own (`merge`, `predict`: `base_model_name_or_path` in adapter_config.json, a relative path read
relative to the adapter directory). `--base-model` overrides an adapter's; against a checkpoint, which generates
for exactly one base model, a different one is an error. Nothing falls back to the packaged MiniLM silently.

`BaseModels` loads each base model once, as what scores adapters for it: a `PrototypeClassifier` for an encoder,
the model and its tokenizer for a causal LM; each with its own lock, since adapters are applied as forward hooks.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loragen.bank.base_model import canonical_base_model_id, is_causal_lm, packaged_model
from loragen.bank.errors import ConfigError
from loragen.bank.lora import LoraAdapter

log = logging.getLogger(__name__)


def adapter_base_model(adapter: LoraAdapter, directory: str | os.PathLike | None = None) -> str | None:
    """The base model an adapter names, a relative path resolved against its directory (None: it names none)."""
    raw = (adapter.base_model or "").strip()
    if not raw or packaged_model(raw) is not None or directory is None:
        return raw or None
    path = Path(raw).expanduser()
    if path.is_absolute():
        return raw
    beside = Path(directory) / path
    return str(beside.resolve()) if (beside / "config.json").is_file() else raw


def base_for_adapters(adapters: Sequence[LoraAdapter], directories: Sequence[str | os.PathLike | None],
                      given: str | None) -> str:
    """The base model to apply `adapters` to: `given` (it overrides), else the one they all name.

    Raises:
        ConfigError: no base model given and the adapters name none, or name different ones.
    """
    own = {adapter_base_model(a, d) for a, d in zip(adapters, directories)}
    if given:
        mismatch = sorted(b for b in own if b and b != given)
        if mismatch:
            log.info("--base-model %s overrides the adapters' own %s", given, mismatch)
        return given
    if None in own:
        raise ConfigError("an adapter's adapter_config.json names no base model (base_model_name_or_path); pass "
                          "--base-model NAME|DIR")
    if len(own) > 1:
        raise ConfigError(f"the adapters are for different base models {sorted(own)}; pass --base-model NAME|DIR "
                          "to choose one")
    return own.pop()


def base_for_checkpoint(given: str | None, own: str | None, checkpoint: str | os.PathLike) -> str:
    """The base model to generate for: the checkpoint's own; a given one must be the same model.

    Raises:
        ConfigError: `given` is another base model than the checkpoint's, or neither names one.
        UnknownBaseModelError: `given` is neither packaged nor a local transformers directory.
    """
    if given is None:
        if own is None:
            raise ConfigError(f"checkpoint {checkpoint} records no base model; pass --base-model NAME|DIR")
        return own
    wanted = canonical_base_model_id(given)
    if own is not None and wanted != own:
        raise ConfigError(f"--base-model {given} ({wanted}) conflicts with checkpoint {checkpoint}, which generates "
                          f"adapters for {own}; drop --base-model to use the checkpoint's, or pass a checkpoint "
                          "trained for that base model (--checkpoint DIR)")
    return wanted


@dataclass
class LoadedModel:
    """A base model ready to run adapters: a classifier (encoder) or a causal LM with its tokenizer.

    Attributes:
        base_model: its canonical id.
        classifier: a `PrototypeClassifier` for an encoder, else None.
        model / tokenizer: the causal LM and its tokenizer, else None.
        lock: held while adapters are hooked into the model.
    """

    base_model: str
    classifier: Any = None
    model: Any = None
    tokenizer: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def causal(self) -> bool:
        return self.model is not None


def load_model(base_model: str, device: str | None = "auto") -> LoadedModel:
    """Load `base_model` as a `LoadedModel` (an encoder as a `PrototypeClassifier`, a causal LM as is)."""
    from loragen.bank.base_model import load_base_model, load_tokenizer
    from loragen.bank.device import resolve_device

    base = canonical_base_model_id(base_model)
    if is_causal_lm(base_model):
        model = load_base_model(base_model, device=resolve_device(device))
        return LoadedModel(base, model=model, tokenizer=load_tokenizer(base_model))
    from loragen.bank.train.classifier import PrototypeClassifier

    return LoadedModel(base, classifier=PrototypeClassifier(base_model, device=device))


def refiner(checkpoint: Path | None, device: str | None = "auto"):
    """A factory of the classifier a generator refines with (ABMLL): a new instance on the checkpoint's base model
    when that is an encoder (it returns None for a causal LM); None without a readable checkpoint."""
    from loragen.api.lookup import checkpoint_base_model

    if checkpoint is None or not (Path(checkpoint) / "config.json").is_file():
        return None
    base = checkpoint_base_model(checkpoint)
    if base is None:
        return None
    return lambda: load_model(base, device).classifier


class BaseModels:
    """Each base model loaded once, on first use (thread-safe).

    Args:
        device: where models run ("auto", "cpu", "cuda").
    """

    def __init__(self, device: str | None = "auto") -> None:
        self.device = device
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def get(self, base_model: str) -> LoadedModel:
        """The loaded model for `base_model` (a canonical id, a packaged name or a local directory)."""
        with self._lock:
            if base_model not in self._loaded:
                self._loaded[base_model] = load_model(base_model, self.device)
            return self._loaded[base_model]
