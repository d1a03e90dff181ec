"""The `retrieve` method: the nearest bank adapter by description, beside the learned generators."""

from __future__ import annotations

from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter


class RetrievalGenerator:
    """Nearest bank adapter by description: the simplest generator, and the service's fallback.

    Only final adapters of in-bank tasks are candidates (held-out tasks and `request.exclude_tasks` never are). The
    bank's search filters by kind itself, so any number of closer adapters of other kinds (uploads, checkpoints)
    cannot hide the final ones.

    Args:
        bank: an open `loragen.bank.store.Bank`.
        kind: adapter kind to return ("final" by default; checkpoints share their task's description).
    """

    name = "retrieval"

    def __init__(self, bank, kind: str = "final") -> None:
        self.bank, self.kind = bank, kind

    def _excluded(self, request: GenerationRequest) -> set[str]:
        return {t.name for t in self.bank.tasks(split="heldout")} | set(request.exclude_tasks)

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """The `request.n_samples` nearest adapters, nearest first.

        Raises:
            NotFoundError: the bank has no eligible adapter.
        """
        hits = self.bank.search_text(request.description, k=request.n_samples, exclude_tasks=self._excluded(request),
                                     kind=self.kind)
        ids = [h.id for h in hits]
        if not ids:
            raise NotFoundError(f"no {self.kind} adapter in the bank to retrieve for {request.description[:60]!r}; "
                                "build the bank first (`loragen bank build`)")
        return [self.bank.get(i) for i in ids]
