"""Text and weight embeddings: shapes, normalisation, gauge invariance, neighbourhoods."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from loragen.bank.embed import WEIGHT_DIM, default_encoder, weight_embedding
from loragen.bank.lora import canonicalize
from tests.unit.bank._bank_util import minilm_adapter


def test_text_encoder_returns_normalised_minilm_embeddings():
    enc = default_encoder()
    vecs = enc.encode(["Is this review positive?", "Does the sentence express a good opinion?", "volcano lava"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32 and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2  # paraphrases closer than an unrelated text
    assert enc.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of strings"):
        enc.encode("one string")


def test_one_text_encodes_in_parallel_threads_exactly_as_alone():
    # At one torch thread (as `loragen serve` runs), a single text's forward pass runs outside the encoder's lock,
    # so concurrent requests use both cores; the result must be the very embedding a plain encode gives.
    from concurrent.futures import ThreadPoolExecutor

    from loragen.bank.device import torch_threads
    from loragen.bank.embed import TextEncoder

    texts = [f"label 0 if the text is Polish, label 1 if it is Czech (variant {i})" for i in range(12)] + [""]
    plain = TextEncoder(cache_size=0)
    expected = {t: plain.encode([t])[0] for t in texts}
    fresh = TextEncoder(cache_size=0)
    with torch_threads(1), ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: fresh.encode([t])[0], texts * 3))
    assert all(np.array_equal(g, expected[t]) for t, g in zip(texts * 3, got))


def test_a_few_texts_are_cached_one_by_one():
    """A call of a few texts serves each text it has seen (alone or in another call) from the cache and encodes the
    others together: one forward for the new ones, none for a text seen before, whichever call saw it."""
    from loragen.bank.embed import TextEncoder

    enc = TextEncoder(cache_size=8)
    calls = []
    real = enc._encode
    enc._encode = lambda texts, progress: calls.append(list(texts)) or real(texts, progress)
    a, b, c = "the text is Polish", "it is Czech", "it is Slovak"
    first = enc.encode([a, b])
    assert calls == [[a, b]]
    again = enc.encode([b, c, a])  # b and a from the cache, c alone
    assert calls[1:] in ([[c]], []) and len(calls) <= 2  # c: one forward (alone it may skip `_encode`)
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[2], first[0])
    assert np.allclose(again[1], TextEncoder(cache_size=0).encode([c])[0], atol=1e-6)
    n = len(calls)
    assert np.array_equal(enc.encode([c])[0], again[1]) and len(calls) == n  # a single encode hits it too
    assert np.allclose(first, TextEncoder(cache_size=0).encode([a, b]), atol=1e-6)


def _regauge(adapter, seed: int):
    """(B·R, R⁻¹·A) for a random well-conditioned invertible R (same ΔW, different factors)."""
    g = torch.Generator().manual_seed(seed)
    r_mat = torch.randn(adapter.r, adapter.r, generator=g, dtype=torch.float64) + 3 * torch.eye(adapter.r,
                                                                                               dtype=torch.float64)
    r_inv = torch.linalg.inv(r_mat)
    return replace(
        adapter,
        lora_A={m: r_inv @ a.double() for m, a in adapter.lora_A.items()},
        lora_B={m: b.double() @ r_mat for m, b in adapter.lora_B.items()},
    )


def test_weight_embedding_is_gauge_invariant():
    adapter = minilm_adapter(seed=0, r=4, alpha=8.0)
    base = weight_embedding(adapter)
    assert base.shape == (WEIGHT_DIM,) and np.linalg.norm(base) == pytest.approx(1.0, abs=1e-6)
    regauged = _regauge(adapter, seed=1)
    assert not torch.allclose(regauged.lora_A[adapter.modules[0]].float(), adapter.lora_A[adapter.modules[0]])
    np.testing.assert_allclose(weight_embedding(regauged), base, atol=1e-6)
    # Same ΔW with another rank/alpha split (scaling folded differently) and the canonical form.
    doubled = replace(adapter, lora_alpha=16.0, lora_B={m: b / 2 for m, b in adapter.lora_B.items()})
    np.testing.assert_allclose(weight_embedding(doubled), base, atol=1e-6)
    np.testing.assert_allclose(weight_embedding(canonicalize(adapter)), base, atol=1e-5)


def test_weight_embedding_separates_different_and_groups_similar_adapters():
    adapter = minilm_adapter(seed=0)
    other = weight_embedding(minilm_adapter(seed=1))
    g = torch.Generator().manual_seed(5)
    near = replace(adapter, lora_B={m: b + 0.03 * torch.randn(b.shape, generator=g) for m, b in adapter.lora_B.items()})
    base = weight_embedding(adapter)
    assert base @ weight_embedding(near) > 0.9
    assert abs(base @ other) < 0.3
    assert np.array_equal(weight_embedding(adapter), base)  # deterministic (fixed seeded maps)


def test_weight_embedding_of_zero_delta_is_zero():
    adapter = minilm_adapter(seed=0)
    zero = replace(adapter, lora_B={m: torch.zeros_like(b) for m, b in adapter.lora_B.items()})
    assert not weight_embedding(zero).any()
