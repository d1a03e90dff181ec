"""The text encoder the condition uses: the bank's `TextEncoder` (MiniLM sentence embeddings, L2-normalised)."""

from __future__ import annotations

from loragen.hypernet.condition import TextEncode


def default_text_encode(model: str | None = None) -> TextEncode:
    """`encode(texts) -> (n, 384)` from the bank's shared TextEncoder for `model` (default: packaged MiniLM)."""
    from loragen.bank.embed import default_encoder

    return default_encoder(model).encode
