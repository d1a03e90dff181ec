"""The prototype classifier: an encoder's sentence embedding (+ LoRA) against fixed per-slot label prototypes.

It scores every classification task over an encoder base model: the built-in MiniLM suite's and a user's own.

The head carries no task information: label k is always the same fixed random unit vector, and a text's logit
for label k is the scaled cosine similarity of its mean-pooled, adapted MiniLM embedding to that vector. So the
adapter alone defines the task, and a generator must read the description to produce the right one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from loragen.bank.base_model import load_frozen
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.functional import lora_applied

NUM_SLOTS = 8  # most labels a suite task may have
PROTOTYPE_SEED = 1234
LOGIT_SCALE = 20.0  # 1 / temperature of the cosine similarity
DEFAULT_MAX_LENGTH = 32

Factors = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


def label_prototypes(dim: int, num_slots: int = NUM_SLOTS, seed: int = PROTOTYPE_SEED) -> torch.Tensor:
    """The fixed label prototypes: (num_slots, dim) unit vectors, identical for every task."""
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_slots, dim, generator=gen), dim=-1)


class PrototypeClassifier:
    """An encoder + fixed label prototypes; adapters are applied on the fly (the base model is never modified).

    Args:
        base_model: base model name or local path (default: the packaged all-MiniLM-L6-v2).
        max_length: token window; suite texts fill it exactly.
        device: "cpu", "cuda", "auto" or None (auto).

    Usage::

        clf = PrototypeClassifier()
        logits = clf.logits(["dzień dobry ..."], adapter, num_labels=2)   # (1, 2)
    """

    def __init__(self, base_model: str | None = None, max_length: int = DEFAULT_MAX_LENGTH,
                 device: str | torch.device | None = "cpu") -> None:
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4 tokens, got {max_length}")
        base = load_frozen(base_model, device)
        self.model, self.tokenizer, self.base_model_id, self.device = (base.model, base.tokenizer, base.base_model_id,
                                                                       base.device)
        self.max_length = max_length
        self.prototypes = label_prototypes(self.model.config.hidden_size).to(self.device)  # (S, d)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize to the fixed window (truncating), on the classifier's device."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    def _embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**batch).last_hidden_state  # (n, T, d)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (n, d) mean pooling, as sentence-transformers
        return F.normalize(pooled, dim=-1)

    def _head(self, emb: torch.Tensor, num_labels: int) -> torch.Tensor:
        if not 2 <= num_labels <= NUM_SLOTS:
            raise ValueError(f"num_labels must be in [2, {NUM_SLOTS}], got {num_labels}")
        return LOGIT_SCALE * emb @ self.prototypes[:num_labels].T.to(emb.dtype)  # (n, num_labels)

    def logits_from_factors(self, texts: Sequence[str] | Mapping[str, torch.Tensor], factors: Factors | None,
                            scaling: float = 1.0, num_labels: int = 2) -> torch.Tensor:
        """Logits with raw LoRA factors applied, differentiable in the factors (training, ABMLL likelihoods).

        Args:
            texts: strings, or an already tokenized batch from `tokenize`.
            factors: module path -> (A (r, in), B (out, r)); None runs the base model.
            scaling: LoRA scaling (alpha / r).
            num_labels: how many label slots the task uses.

        Returns:
            (n, num_labels) logits.
        """
        batch = texts if isinstance(texts, Mapping) else self.tokenize(texts)
        if not factors:
            return self._head(self._embed(batch), num_labels)
        with lora_applied(self.model, factors, scaling):
            return self._head(self._embed(batch), num_labels)

    def logits(self, texts: Sequence[str], adapter: LoraAdapter | None = None, num_labels: int = 2,
               batch_size: int = 256) -> torch.Tensor:
        """Logits (n, num_labels) for `texts` with `adapter` applied (None: the base model), without gradients."""
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                chunk = texts[i : i + batch_size]
                if adapter is None:
                    out.append(self.logits_from_factors(chunk, None, num_labels=num_labels))
                else:
                    adapter_dev = adapter.to(self.device) if adapter.device != self.device else adapter
                    with lora_applied(self.model, adapter_dev):
                        out.append(self._head(self._embed(self.tokenize(chunk)), num_labels))
        return torch.cat(out) if out else torch.empty(0, num_labels)

    def accuracy(self, examples: Sequence[tuple[str, int]], adapter: LoraAdapter | None = None,
                 num_labels: int = 2) -> float:
        """Share of (text, label) examples whose highest logit is the label."""
        if not examples:
            raise ValueError("accuracy needs at least one example")
        texts = [t for t, _ in examples]
        labels = torch.tensor([y for _, y in examples])
        pred = self.logits(texts, adapter, num_labels).argmax(-1).cpu()
        return float((pred == labels).float().mean())


SuiteClassifier = PrototypeClassifier  # the name the built-in suite has always used
