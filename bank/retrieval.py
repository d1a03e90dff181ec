"""The `retrieve` method: the nearest bank adapter by description, beside the learned generators.

Candidates are adapters of the given kinds (final oracles by default; the CLI and the service also take a user's
uploaded adapters) for the request's base model, never of a held-out task or of `request.exclude_tasks`. Generated
adapters are never candidates in the service (every generation is stored there and must not feed retrieval).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

from loragen.bank.describe import OTHER_ORDER, described_order, label_order
from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import SearchHit

log = logging.getLogger(__name__)

SERVICE_KINDS = ("final", "uploaded")  # what the CLI's and the service's `retrieve` return
_FACTS_CACHE = 65536  # adapters whose (kind, base model) a generator remembers
ExampleJudge = Callable[[LoraAdapter, Sequence[tuple[str, int]], int], "int | None"]
LABEL_WINDOW = 8  # the nearest hits among which one whose task names the labels in the request's order is preferred


class RetrievalGenerator:
    """Nearest bank adapters by description, of the request's base model.

    The search widens until enough candidates of the wanted kinds and base model are found (or every adapter was
    seen), so any number of closer adapters of other kinds or base models cannot hide them. An adapter's kind and
    base model never change (ids are never reused, records never updated), so each is read from the bank once and
    remembered (least recently used forgotten first): a request does not query DuckDB once per hit.

    Args:
        bank: an open `loragen.bank.store.Bank`.
        kinds: adapter kinds that are candidates (default: final adapters, the task oracles).
        match_base_model: return only adapters for `request.base_model` (the harness's banks hold one base model
            and leave it off).
        judge: (adapter, examples, number of labels) -> how many it gets right (None: cannot tell): labelled
            examples, or (input, output) pairs of a generation task by exact match; with it, a request's examples
            pick among the `LABEL_WINDOW` nearest (`api.probe.example_judge`).
    """

    name = "retrieval"

    def __init__(self, bank, kinds: Collection[str] = ("final",), match_base_model: bool = False,
                 judge: ExampleJudge | None = None) -> None:
        self.bank, self.kinds, self.match_base_model, self.judge = bank, tuple(kinds), match_base_model, judge
        self._facts: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> (kind, base model)
        self._facts_lock = threading.Lock()

    def candidates(self, description: str, n: int, base_model: str | None = None,
                   exclude: Collection[str] = ()) -> list[SearchHit]:
        """Up to `n` candidate hits, nearest first (of `base_model` only, when given)."""
        excluded = {t.name for t in self.bank.tasks(split="heldout")} | set(exclude)
        kind = self.kinds[0] if len(self.kinds) == 1 else None  # one kind: the index filters it itself
        k = n if kind is not None and base_model is None else max(4 * n, 16)
        while True:
            hits = self.bank.search_text(description, k=k, exclude_tasks=excluded, kind=kind)
            fit = [h for h in hits if self._fits(h.id, base_model)]
            if len(fit) >= n or len(hits) < k:
                return fit[:n]
            k *= 4

    def _fits(self, adapter_id: str, base_model: str | None) -> bool:
        kind, its_base_model = self._kind_and_base_model(adapter_id)
        return kind in self.kinds and (base_model is None or its_base_model == base_model)

    def _kind_and_base_model(self, adapter_id: str) -> tuple[str, str]:
        with self._facts_lock:
            facts = self._facts.get(adapter_id)
            if facts is not None:
                self._facts.move_to_end(adapter_id)
                return facts
        record = self.bank.record(adapter_id)
        facts = (record.kind, record.base_model)
        with self._facts_lock:
            self._facts[adapter_id] = facts
            while len(self._facts) > _FACTS_CACHE:
                self._facts.popitem(last=False)
        return facts

    def _in_label_order(self, hits: list[SearchHit], request: GenerationRequest) -> list[SearchHit]:
        """`hits` stably reordered by how their tasks name the request's labels: `label_order` with label names,
        else `described_order` (the description's label slots; the bank's task list is memoised)."""
        known = {t.name: t.labels for t in self.bank.tasks()}
        if request.labels:
            order = lambda hit: label_order(known.get(hit.task), request.labels)  # noqa: E731
        else:
            order = lambda hit: described_order(request.description, known.get(hit.task))  # noqa: E731
        ranked = sorted(hits, key=order)
        if order(ranked[0]) == OTHER_ORDER:
            log.warning("retrieve: the nearest adapters' tasks all name the labels in another order than yours (%s "
                        "is %s): its labels will not mean yours; import or train a task in your order",
                        ranked[0].task, list(known.get(ranked[0].task) or ()))
        elif ranked[0] is not hits[0]:
            log.info("retrieve: %s names the labels in your order; nearer %s does not", ranked[0].task, hits[0].task)
        return ranked

    def nearest_base_model(self, description: str) -> str | None:
        """The base model of the nearest candidate (None: the bank has none)."""
        hits = self.candidates(description, 1)
        return self._kind_and_base_model(hits[0].id)[1] if hits else None

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """The `request.n_samples` nearest adapters, nearest first.

        Among the `LABEL_WINDOW` nearest, adapters of tasks naming the request's labels in the same order come
        first and those naming them in another order last: description embeddings hardly tell "0 = Dutch, 1 =
        German" from "0 = German, 1 = Dutch", and such a twin's adapter gives every text the other label. The
        labels are the request's label names (`label_order`), else what the description's label slots name
        (`described_order`: "label 0 if ..., label 1 if ..."; a free-text description keeps the nearest first).
        With examples and a `judge`, the one that gets most of them right comes first (ties in that order).

        Raises:
            NotFoundError: the bank has no candidate (for that base model, when matched).
        """
        base_model = request.base_model if self.match_base_model else None
        n = request.n_samples
        hits = self.candidates(request.description, max(n, LABEL_WINDOW), base_model, request.exclude_tasks)
        if not hits:
            where = f" for base model {base_model}" if base_model else ""
            raise NotFoundError(f"no {' or '.join(self.kinds)} adapter{where} in the bank to retrieve for "
                                f"{request.description[:60]!r}; add some (`loragen bank import`, `loragen bank "
                                "build`, `loragen bank train`) or pick another base model")
        hits = self._in_label_order(hits, request)
        if request.examples and self.judge is not None:
            return self._by_examples([self.bank.get(h.id) for h in hits], request)[:n]
        return [self.bank.get(h.id) for h in hits[:n]]

    def _by_examples(self, adapters: list[LoraAdapter], request: GenerationRequest) -> list[LoraAdapter]:
        """`adapters` stably reordered by how many of the request's labelled examples each gets right (`judge`;
        one it cannot score keeps its place after the scored ones)."""
        scores = [self.judge(a, request.examples, request.num_labels) for a in adapters]
        ranked = sorted(range(len(adapters)), key=lambda i: (scores[i] is None, -(scores[i] or 0), i))
        if ranked[0] != 0:
            log.info("retrieve: %s gets %s of your %d examples right, the nearest %s", adapters[ranked[0]].metadata
                     .get("task"), scores[ranked[0]], len(request.examples), scores[0])
        return [adapters[i] for i in ranked]
