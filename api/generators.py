"""The generation methods the service offers, by name: one registry, no special cases in the service.

Each entry builds an `AdapterGenerator` from the service's context. A method whose package or trained checkpoint
is missing is reported as unavailable (with the reason and the command that fixes it) instead of failing the
whole service, so a bank-only install still serves `retrieve`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bank.errors import LoragenError
from bank.generator import AdapterGenerator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorContext:
    """What a generator factory may use: the open bank, a checkpoint path, the device."""

    bank: Any
    device: str = "auto"
    checkpoint: Path | None = None


@dataclass(frozen=True)
class MethodSpec:
    """Where a method's generator class lives and how to tell users to make it available."""

    target: str  # "module:Class"
    hint: str


REGISTRY: dict[str, MethodSpec] = {
    "retrieve": MethodSpec("bank.suite.evaluate:RetrievalGenerator", "needs the bank (bank/suite)"),
    "cvae": MethodSpec("hypernet.generate:CVAEGenerator", "train it first: `loragen train hypernet`"),
    "abmll": MethodSpec("meta.generate:ABMLLGenerator", "train it first: `loragen train meta`"),
}


def _load_class(target: str) -> Callable[..., AdapterGenerator]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _construct(cls: Callable[..., AdapterGenerator], ctx: GeneratorContext) -> AdapterGenerator:
    """Call the generator's `from_bank`/`load` constructor or its __init__ with the arguments it accepts."""
    for ctor_name in ("from_service", "load", "from_bank"):
        ctor = getattr(cls, ctor_name, None)
        if ctor is not None:
            break
    else:
        ctor = cls
    params = inspect.signature(ctor).parameters
    offered = {"bank": ctx.bank, "device": ctx.device, "checkpoint": ctx.checkpoint, "path": ctx.checkpoint}
    kwargs = {k: v for k, v in offered.items() if k in params and (v is not None or k == "bank")}
    return ctor(**kwargs)


def build_generators(methods: tuple[str, ...], contexts: dict[str, GeneratorContext]
                     ) -> tuple[dict[str, AdapterGenerator], dict[str, str]]:
    """Build every requested method's generator.

    Returns:
        (method -> generator ready to serve, method -> why it is unavailable).
    """
    ready: dict[str, AdapterGenerator] = {}
    unavailable: dict[str, str] = {}
    for method in methods:
        spec = REGISTRY[method]
        try:
            ready[method] = _construct(_load_class(spec.target), contexts[method])
        except (ImportError, AttributeError) as err:
            unavailable[method] = f"not installed in this build ({err}); {spec.hint}"
        except (LoragenError, OSError, ValueError, KeyError) as err:
            unavailable[method] = f"{err}; {spec.hint}"
        if method in unavailable:
            log.warning("generation method %r unavailable: %s", method, unavailable[method])
    return ready, unavailable
