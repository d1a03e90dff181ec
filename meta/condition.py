"""Order-aware description embeddings for ABMLL's amortized posterior.

A mean-pooled sentence embedding barely tells "label 0 if Polish, label 1 if Czech" from the reverse (cosine 0.998,
issue 5), yet the two need opposite adapters. So, as the hypernetwork does, the description is cut into per-label
clauses (`bank.describe.segment_description`) and each is embedded on its own; the embedding is the
concatenation [whole description, label 0 clause, ..., label S-1 clause] (absent labels are zeros).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loragen.bank.describe import segment_description

TextEncode = Callable[[Sequence[str]], np.ndarray]


class SlotDescriptionEncoder:
    """texts -> (n, (max_slots + 1) · text_dim) embeddings: the whole text, then one block per label slot.

    Args:
        encode: sentence encoder, texts -> (n, text_dim) (the bank's `TextEncoder().encode`).
        max_slots: label slots (the suite has at most 3 labels per task).

    Usage::

        enc = SlotDescriptionEncoder(TextEncoder().encode)
        enc(["label 0 if Polish, label 1 if Czech"]).shape   # (1, 1536)
    """

    def __init__(self, encode: TextEncode, max_slots: int = 3) -> None:
        if max_slots < 2:
            raise ValueError(f"max_slots must be >= 2, got {max_slots}")
        self.encode, self.max_slots = encode, max_slots

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        segments = [segment_description(t, self.max_slots) for t in texts]
        pieces = sorted({s for seg in segments for s in seg.values()})
        whole = np.asarray(self.encode(texts), dtype=np.float32)  # (n, d)
        lookup = dict(zip(pieces, np.asarray(self.encode(pieces), dtype=np.float32))) if pieces else {}
        out = np.zeros((len(texts), self.max_slots + 1, whole.shape[1]), dtype=np.float32)
        out[:, 0] = whole
        for i, seg in enumerate(segments):
            for k, piece in seg.items():
                out[i, k + 1] = lookup[piece]
        return out.reshape(len(texts), -1)
