"""The generation methods, by name: the one table the service, its settings, the SDK and the CLI read.

Each entry builds an `AdapterGenerator` from the service's context. A method whose package or trained checkpoint
is missing is reported as unavailable (with the reason and the command that fixes it) instead of failing the
whole service, so a bank-only install still serves `retrieve`.

Importing this module is cheap (no torch): the CLI reads `METHODS` while it builds its parser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loragen.bank.errors import CheckpointError, LoragenError

if TYPE_CHECKING:
    from loragen.bank.generator import AdapterGenerator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorContext:
    """What a generator builder may use: the open bank, a checkpoint path, the device, the suite classifier.

    Attributes:
        bank: the service's open `bank.store.Bank`.
        device: where models run ("auto", "cpu", "cuda").
        checkpoint: the method's trained checkpoint (None: the training command's default location).
        classifier: returns the classifier of the generator's base model (ABMLL refines with it); None when
            there is none (a causal LM).
        judge: how many labelled examples an adapter gets right (`api.probe.example_judge`): retrieval picks
            among its nearest adapters with it when a request has examples.
    """

    bank: Any
    device: str = "auto"
    checkpoint: Path | None = None
    classifier: Callable[[], Any] | None = None
    judge: Callable[..., int | None] | None = None


def _retrieve(ctx: GeneratorContext) -> AdapterGenerator:
    from loragen.bank.retrieval import SERVICE_KINDS, RetrievalGenerator  # final and uploaded, of the base model

    return RetrievalGenerator(ctx.bank, kinds=SERVICE_KINDS, match_base_model=True, judge=ctx.judge)


def _cvae(ctx: GeneratorContext) -> AdapterGenerator:
    from loragen.hypernet.generate import CVAEGenerator

    return CVAEGenerator.from_checkpoint(ctx.checkpoint)


def abmll_checkpoint_dir(configured: Path | None = None) -> Path:
    """The ABMLL checkpoint a method context uses: the configured one, else `<home>/meta`."""
    from loragen.bank import paths

    return configured or paths.checkpoint_dir("meta")


def _abmll(ctx: GeneratorContext) -> AdapterGenerator:
    from loragen.bank.device import resolve_device
    from loragen.meta.generate import ABMLLGenerator

    path = abmll_checkpoint_dir(ctx.checkpoint)
    classifier = ctx.classifier() if ctx.classifier else None  # None for a causal LM: no refinement
    return ABMLLGenerator.from_checkpoint(path, classifier=classifier, device=resolve_device(ctx.device))


@dataclass(frozen=True)
class MethodSpec:
    """How to build a method's generator, and how to tell users to make it available."""

    build: Callable[[GeneratorContext], AdapterGenerator]
    hint: str


REGISTRY: dict[str, MethodSpec] = {
    "retrieve": MethodSpec(_retrieve, "it needs a bank with adapters: `loragen bank build`"),
    "cvae": MethodSpec(_cvae, "train it first: `loragen train hypernet`"),
    "abmll": MethodSpec(_abmll, "train it first: `loragen train meta`"),
}
METHODS: tuple[str, ...] = tuple(REGISTRY)  # every method name, in the registry's order


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
            ready[method] = spec.build(contexts[method])
        except ImportError as err:
            unavailable[method] = f"not installed in this build ({err}); {spec.hint}"
        except (LoragenError, OSError, ValueError, KeyError) as err:
            unavailable[method] = f"{err}; {spec.hint}"
        if method in unavailable:
            log.warning("generation method %r unavailable: %s", method, unavailable[method])
    return ready, unavailable


def default_checkpoint(method: str) -> Path | None:
    """Where `method`'s training command writes its checkpoint when none is named (None: retrieve has none)."""
    from loragen.bank import paths

    if method == "cvae":
        return paths.checkpoint_dir("hypernet")
    return abmll_checkpoint_dir(None) if method == "abmll" else None


def build_methods(specs: Sequence[str], bank: Any, classifier: Any, *, labels: bool = False,
                  retrieve: bool = True, causal: tuple[Any, Any] | None = None
                  ) -> tuple[dict[str, AdapterGenerator], dict[str, Path | None]]:
    """`--method NAME[@LABEL][=CHECKPOINT]` options -> (row -> generator, row -> its checkpoint directory), through
    the method registry (`loragen eval` and `loragen trust fit`).

    Args:
        classifier: the tasks' classifier (ABMLL refines with it; retrieval picks by examples with it), None for a
            causal LM.
        causal: (model, tokenizer) of the tasks' causal LM: retrieval picks by exact match on the examples with it.
        labels: accept @LABEL, to compare two checkpoints of one method side by side (`cvae@b=runs/b`).
        retrieve: accept the retrieve method (`loragen eval` has it as its retrieval baseline already).

    Raises:
        CheckpointError: an unknown method, a row given twice, or a method that cannot be loaded (with the command
            that makes it).
    """
    from loragen.api.probe import example_judge

    allowed = [m for m in REGISTRY if retrieve or m != "retrieve"]
    extra = "" if retrieve else " (retrieval is a baseline already)"
    ready: dict[str, AdapterGenerator] = {}
    checkpoints: dict[str, Path | None] = {}
    unavailable: dict[str, str] = {}
    for spec in specs:
        head, _, path = spec.partition("=")
        name, _, label = head.partition("@") if labels else (head, "", "")
        row = f"{name}@{label}" if label else name
        if name not in allowed:
            raise CheckpointError(f"--method {name!r}: use one of {', '.join(allowed)}{extra}")
        if row in checkpoints:
            hint = f"label the second checkpoint, e.g. --method {name}@b={path or 'DIR'}" if labels else "give it once"
            raise CheckpointError(f"--method {spec!r}: {row!r} is given twice; {hint}")
        ckpt = Path(path) if path else None
        checkpoints[row] = ckpt or default_checkpoint(name)
        judge = None if classifier is None and causal is None else example_judge(classifier=classifier, causal=causal)
        context = GeneratorContext(bank, checkpoint=ckpt, classifier=None if classifier is None else lambda: classifier,
                                   judge=judge)
        built, failed = build_generators((name,), {name: context})
        ready.update({row: g for g in built.values()})
        unavailable.update({row: why for why in failed.values()})
    if unavailable:
        raise CheckpointError("; ".join(f"--method {m}: {why}" for m, why in unavailable.items()))
    return ready, checkpoints
