"""The `retrieve` method as the CLI and the service run it: the nearest bank adapter for the request's base model.

Candidates are the bank's final adapters (trained oracles) and uploaded ones (a user's own adapters, added with
their descriptions); generated adapters never are (the service stores every generation, which must not feed
retrieval), nor adapters of held-out tasks. Only adapters for the request's base model are returned; with no base
model asked for, `nearest_base_model` says which base model the nearest candidate is for.
"""

from __future__ import annotations

from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import SearchHit

KINDS = ("final", "uploaded")


class BankRetrieval:
    """Nearest bank adapters by description, of the request's base model.

    Args:
        bank: an open `loragen.bank.store.Bank`.
        kinds: adapter kinds that are candidates.
    """

    name = "retrieval"

    def __init__(self, bank, kinds: tuple[str, ...] = KINDS) -> None:
        self.bank, self.kinds = bank, kinds

    def candidates(self, description: str, n: int, base_model: str | None = None,
                   exclude: frozenset[str] = frozenset()) -> list[SearchHit]:
        """Up to `n` candidate hits, nearest first (of `base_model` only, when given)."""
        excluded = {t.name for t in self.bank.tasks(split="heldout")} | set(exclude)
        k = max(4 * n, 16)
        while True:  # one search over every kind, widened until n candidates fit or every adapter was seen
            hits = self.bank.search_text(description, k=k, exclude_tasks=excluded)
            fit = [h for h in hits if self._fits(h.id, base_model)]
            if len(fit) >= n or len(hits) < k:
                return fit[:n]
            k *= 4

    def _fits(self, adapter_id: str, base_model: str | None) -> bool:
        record = self.bank.record(adapter_id)
        return record.kind in self.kinds and (base_model is None or record.base_model == base_model)

    def nearest_base_model(self, description: str) -> str | None:
        """The base model of the nearest candidate (None: the bank has none)."""
        hits = self.candidates(description, 1)
        return self.bank.record(hits[0].id).base_model if hits else None

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """The `request.n_samples` nearest adapters for `request.base_model`, nearest first.

        Raises:
            NotFoundError: the bank has no candidate for that base model.
        """
        hits = self.candidates(request.description, request.n_samples, request.base_model,
                               frozenset(request.exclude_tasks))
        if not hits:
            raise NotFoundError(f"no final or uploaded adapter for base model {request.base_model} in the bank to "
                                f"retrieve for {request.description[:60]!r}; add some (`loragen bank import`, "
                                "`loragen bank build`) or pick another base model")
        return [self.bank.get(h.id) for h in hits]
