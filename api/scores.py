"""The scores a service generation carries: its uncertainty (`api.uncertainty`) and its trust (`api.trust`),
computed from the service's bank, base models and generators, never holding the requested method's lock.

The trust score compares the adapter with the other methods' adapters for the same request (`disagreement`, the
feature the retrieval trust model leans on most: without it its cross-validated error was 0.34 against 0.14), so
the service's other generators are its peers; each peer generates behind its method's lock, as any request does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loragen.api.generators import abmll_checkpoint_dir
from loragen.api.settings import Settings
from loragen.api.trust import trust_dict
from loragen.api.uncertainty import Scores, nearest_task, probe_inputs, sample_dispersion, score_adapters
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.errors import LoragenError
from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora import LoraAdapter

log = logging.getLogger(__name__)


class LockedGenerator:
    """A generator whose `generate` holds its method's lock (generators keep mutable state: one request at a time)."""

    def __init__(self, generator: AdapterGenerator, lock: threading.Lock) -> None:
        self.generator, self.lock = generator, lock

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        with self.lock:
            return self.generator.generate(request)


def trust(method: str, request: GenerationRequest, adapters: list[LoraAdapter], *, bank: Any, models: Any,
          generators: Mapping[str, AdapterGenerator], locks: Mapping[str, threading.Lock],
          inputs: list[str] | None, checkpoint: Path | None) -> dict[str, Any]:
    """The trust entry of a generation, the service's other generators as peers (built only when a trust file is
    there to use them)."""
    peers = lambda: {m: LockedGenerator(g, locks[m]) for m, g in generators.items() if m != method}  # noqa: E731
    return trust_dict(method, request, adapters, models=models, bank=bank, inputs=inputs, checkpoint=checkpoint,
                      peers=peers)


def uncertainty(request: GenerationRequest, adapters: list[LoraAdapter], *, bank: Any, models: Any,
                settings: Settings, model_scores: bool, inputs: list[str] | None = None) -> Scores:
    """Cheap, honest signals always; entropy, mutual information and confidence on the base model (an encoder with
    the meta package; on `inputs` when given) unless `model_scores` is off (`scored` says which)."""
    scores: Scores = {"scored": model_scores}
    hits = bank.search_text(request.description, k=1, kind="final")  # tasks the bank knows
    if hits:  # how close the request is to a task the bank knows: low similarity means extrapolation
        scores["nearest_task_similarity"] = min(1.0, float(hits[0].score))
        scores["nearest_task"] = hits[0].task
    if len(adapters) > 1:
        scores["sample_dispersion"] = sample_dispersion(adapters)
    base = request.base_model
    if not model_scores:  # the bank-only signals score_adapters adds, without running the base model
        similarity, task = nearest_task(bank, request.description, base, hits)  # reuses the search
        return {**scores, "description_similarity": similarity, "nearest_task": task}
    inputs = probe_inputs(bank, request.description, request.examples, hits, inputs, base_model=base)
    calibrator = settings.calibrator or (shipped_calibrator(settings) if base == DEFAULT_BASE_MODEL else None)
    try:
        scores.update(score_adapters(models, base, request.description, adapters, inputs, bank=bank,
                                     num_labels=request.num_labels, calibrator=calibrator))
    except LoragenError as err:  # the adapters are fine; only the model-based scores are missing
        log.warning("uncertainty of a %s adapter not scored: %s", base, err)
    return scores


def shipped_calibrator(settings: Settings) -> Path | None:
    """The calibrator `bench/meta_eval.py` writes next to the ABMLL checkpoint it measured, when there is one."""
    path = abmll_checkpoint_dir(settings.abmll_checkpoint) / "calibrator.json"
    return path if path.is_file() else None
