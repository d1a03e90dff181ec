"""Deferred scores: a generation's model-based scores, computed when the client asks for them.

A scored generation runs the base model on probe texts for its adapter and for the other methods' adapters (the
trust score's disagreement), several times the cost of the generation itself. By default (`score="deferred"`) the
service answers at once and keeps what it needs to score the generation later: the request and the stored
adapters' ids, never the tensors (they are read back from the bank: a generated adapter as its canonical factors,
the same ΔW, so its scores match the inline ones up to float rounding). `GET /v1/generations/{id}/scores` computes
the scores on its first call, once even when several clients ask at the same time, and answers later calls from
the result.

Memory is bounded: the last `capacity` generations are kept (least recently used dropped first); a request holds
at most MAX_EXAMPLES examples and MAX_INPUTS inputs of bounded length, so an entry is small.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loragen.api.errors import ApiError
from loragen.bank.generator import GenerationRequest

Scored = tuple[dict[str, Any], dict[str, Any]]  # (uncertainty, trust)


def new_generation_id() -> str:
    """A fresh generation id (random, URL-safe)."""
    return uuid.uuid4().hex


def scores_url(generation: str) -> str:
    """Where a deferred generation's scores are served."""
    return f"/v1/generations/{generation}/scores"


def pending_trust(generation: str) -> dict[str, Any]:
    """The trust entry of a deferred generation's response: no number yet, and where to get it."""
    return {"expected": None, "low": None, "high": None, "calibrated": False,
            "advice": f"deferred: GET {scores_url(generation)} for the trust score (or send score=inline)"}


@dataclass
class Pending:
    """What scoring a generation later needs."""

    method: str
    request: GenerationRequest
    ids: tuple[str, ...]
    inputs: list[str] | None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    result: Scored | None = None


class DeferredScores:
    """The generations waiting for (or holding) their scores, the last `capacity` of them.

    Args:
        capacity: generations kept; older ones are dropped (their scores GET then answers 404 and says why).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, Pending] = OrderedDict()
        self._lock = threading.Lock()  # guards the dict only; scoring runs under the entry's own lock

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def add(self, generation: str, entry: Pending) -> None:
        """Keep `entry` under `generation`, dropping the least recently used beyond the capacity."""
        with self._lock:
            self._entries[generation] = entry
            self._entries.move_to_end(generation)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def scores(self, generation: str, compute: Callable[[Pending], Scored]) -> tuple[Pending, Scored, float]:
        """The generation's (uncertainty, trust), computed by `compute` on the first call; and the seconds that
        took (0.0 when they were there already).

        Raises:
            ApiError: 404 when this server holds no such generation.
        """
        with self._lock:
            entry = self._entries.get(generation)
            if entry is not None:
                self._entries.move_to_end(generation)
        if entry is None:
            raise ApiError(404, "not_found", f"this server holds no deferred scores for generation {generation!r}: "
                           f"it keeps those of its last {self.capacity} score=deferred generations "
                           "(LORAGEN_DEFERRED_SCORES) until it restarts. Generate again, with score=inline to get "
                           "the scores in the response.")
        with entry.lock:  # concurrent GETs of one generation compute it once
            if entry.result is not None:
                return entry, entry.result, 0.0
            start = time.perf_counter()
            entry.result = compute(entry)
            return entry, entry.result, time.perf_counter() - start
