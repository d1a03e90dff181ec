"""The `retrieve` method: the nearest bank adapter by description, beside the learned generators.

Candidates are adapters of the given kinds (final oracles by default; the CLI and the service also take a user's
uploaded adapters) for the request's base model, never of a held-out task or of `request.exclude_tasks`. Generated
adapters are never candidates in the service (every generation is stored there and must not feed retrieval).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence

from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import SearchHit

log = logging.getLogger(__name__)

SERVICE_KINDS = ("final", "uploaded")  # what the CLI's and the service's `retrieve` return
_FACTS_CACHE = 65536  # adapters whose (kind, base model) a generator remembers
LABEL_WINDOW = 8  # with label names, the nearest hits among which one naming them in the same order is preferred


def label_order(task_labels: Sequence[str] | None, labels: Sequence[str]) -> int:
    """How a bank task's label names relate to a request's (compared case- and space-insensitively): 0 the same
    names in the same order, 2 the same names in another order (its label k is another class: known wrong), 1
    anything else (other or unknown classes)."""
    norm = lambda names: tuple(" ".join(str(n).split()).casefold() for n in names)  # noqa: E731
    if not task_labels:
        return 1
    ours, theirs = norm(labels), norm(task_labels)
    return 0 if ours == theirs else 2 if sorted(ours) == sorted(theirs) else 1


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
    """

    name = "retrieval"

    def __init__(self, bank, kinds: Collection[str] = ("final",), match_base_model: bool = False) -> None:
        self.bank, self.kinds, self.match_base_model = bank, tuple(kinds), match_base_model
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

    def _by_labels(self, hits: list[SearchHit], labels: Sequence[str]) -> list[SearchHit]:
        """`hits` stably reordered by `label_order` of their tasks (the bank's task list is memoised)."""
        known = {t.name: t.labels for t in self.bank.tasks()}
        ranked = sorted(hits, key=lambda h: label_order(known.get(h.task), labels))
        if label_order(known.get(ranked[0].task), labels) == 2:
            log.warning("retrieve: the nearest adapters' tasks all name the labels %s in another order (%s): its "
                        "labels will not mean yours; import or train a task in your order", list(labels),
                        list(known.get(ranked[0].task) or ()))
        elif ranked[0] is not hits[0]:
            log.info("retrieve: %s names the labels %s in that order; nearer %s does not", ranked[0].task,
                     list(labels), hits[0].task)
        return ranked

    def nearest_base_model(self, description: str) -> str | None:
        """The base model of the nearest candidate (None: the bank has none)."""
        hits = self.candidates(description, 1)
        return self._kind_and_base_model(hits[0].id)[1] if hits else None

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """The `request.n_samples` nearest adapters, nearest first.

        With label names (`request.labels`), among the `LABEL_WINDOW` nearest the adapters of tasks naming the same
        labels in the same order come first and those naming them in another order last (`label_order`):
        description embeddings hardly tell "0 = Dutch, 1 = German" from "0 = German, 1 = Dutch", and the twin's
        adapter gives every text the other label.

        Raises:
            NotFoundError: the bank has no candidate (for that base model, when matched).
        """
        base_model = request.base_model if self.match_base_model else None
        n = request.n_samples
        window = max(n, LABEL_WINDOW) if request.labels else n
        hits = self.candidates(request.description, window, base_model, request.exclude_tasks)
        if request.labels and hits:
            hits = self._by_labels(hits, request.labels)
        hits = hits[:n]
        if not hits:
            where = f" for base model {base_model}" if base_model else ""
            raise NotFoundError(f"no {' or '.join(self.kinds)} adapter{where} in the bank to retrieve for "
                                f"{request.description[:60]!r}; add some (`loragen bank import`, `loragen bank "
                                "build`, `loragen bank train`) or pick another base model")
        return [self.bank.get(h.id) for h in hits]
