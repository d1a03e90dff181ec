"""Embeddings the bank searches: descriptions (sentence-transformers) and adapter weights (a sketch of ΔW).

Usage::

    enc = TextEncoder()                          # the packaged all-MiniLM-L6-v2, offline
    vecs = enc.encode(["classify Polish vs Czech sentences"])   # (1, 384) float32, L2-normalised
    w = weight_embedding(adapter)                # (256,) float32, L2-normalised, depends on ΔW only
"""

from __future__ import annotations

import functools
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from loragen.bank.base_model import canonical_base_model_id, resolve_base_model
from loragen.bank.device import resolve_device, torch_threads
from loragen.bank.lora.adapter import LoraAdapter

WEIGHT_DIM = 256
"""Length of a weight embedding."""
_PROBES = 16  # probes on each side of ΔW: each module is sketched as a (16, 16) matrix Qᵀ ΔW P


class TextEncoder:
    """Sentence embeddings of descriptions with sentence-transformers.

    Args:
        model: None or an alias of all-MiniLM-L6-v2 for the packaged model, else a local sentence-transformers
            (or plain transformers) directory. Nothing is downloaded.
        device: "cpu", "cuda" or "auto"/None (CUDA when present).
        batch_size: sentences per forward pass.
        cache_size: texts whose embeddings are remembered, least recently used dropped first (0: none). A service
            asks for the same description's embedding (and its label segments') several times per request
            (retrieval, the generators, uncertainty, neighbours), and a micro-batch of requests encodes theirs in
            one call. Calls of up to _SMALL_BATCH texts go through the cache, text by text; the texts it lacks are
            encoded together (a text encoded in a batch matches its single encoding up to float rounding, ~1e-7).

    Raises:
        UnknownBaseModelError: `model` is neither the packaged model nor a local directory.
    """

    def __init__(self, model: str | os.PathLike | None = None, device: str | None = None, batch_size: int = 64,
                 cache_size: int = 1024):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.path = resolve_base_model(model)
        self.name = canonical_base_model_id(model)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._model = None
        # HF fast tokenizers are not re-entrant ("Already borrowed"); the service encodes from several threads.
        self._lock = threading.Lock()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> its (dim,) embedding, read-only
        self._cache_lock = threading.Lock()  # never held while encoding

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.path), device=str(self.device))
            self._model.eval()
        return self._model

    @property
    def dim(self) -> int:
        """Length of an embedding (384 for MiniLM)."""
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed `texts`.

        Args:
            texts: sentences (a single string is refused: pass a list).
            show_progress: show a progress bar for long lists.

        Returns:
            (len(texts), dim) float32 array, each row L2-normalised (so inner product = cosine).
        """
        if isinstance(texts, str):
            raise TypeError("TextEncoder.encode takes a list of strings, got a single str; wrap it in a list.")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache_size and len(texts) <= _SMALL_BATCH:
            return self._encode_cached(texts)
        return self._encode(texts, show_progress)

    def _encode_cached(self, texts: list[str]) -> np.ndarray:
        """Embeddings of a few texts, each from the cache when it was encoded before; the others in one forward
        pass (one text alone: `_forward_one`), then remembered one by one."""
        found: dict[str, np.ndarray] = {}
        with self._cache_lock:
            for text in texts:
                vec = self._cache.get(text)
                if vec is not None:
                    self._cache.move_to_end(text)
                    found[text] = vec
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            if len(missing) == 1 and torch.get_num_threads() == 1:
                fresh = [self._forward_one(missing[0])]
            else:
                fresh = list(self._encode(missing, False))
            with self._cache_lock:
                for text, vec in zip(missing, fresh):
                    vec = np.array(vec, dtype=np.float32)  # its own buffer: a row of a batch would pin the batch
                    vec.setflags(write=False)
                    found[text] = self._cache[text] = vec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    def _forward_one(self, text: str) -> np.ndarray:
        """One text through the model's own modules (what `SentenceTransformer.encode` does for one text), with
        only the tokenizer under the lock: a server's worker threads (torch at one thread each) then run their
        forward passes in parallel, one per core, instead of queueing on the lock (measured: the description
        embedding was ~85% of a retrieve request's CPU, serialised)."""
        model = self._load()
        with self._lock:
            features = model.preprocess([text])
        features = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        with torch.inference_mode():
            vec = torch.nn.functional.normalize(model(features)["sentence_embedding"], p=2, dim=1)
        return np.ascontiguousarray(vec[0].float().cpu().numpy(), dtype=np.float32)

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        with self._lock, torch.inference_mode(), torch_threads(1 if len(texts) <= _SMALL_BATCH else None):
            vecs = self._load().encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


_SMALL_BATCH = 16  # encodes this small run on one thread (see bank.device.torch_threads)


def default_encoder(model: str | None = None) -> TextEncoder:
    """One shared encoder per model in a process (loading MiniLM takes a second or two).

    Every name of one model (None, an alias, its hub id, its directory) gets the same encoder, so the bank (which
    names the model it recorded) and the hypernetwork (which may name none) share one model and one cache.
    """
    return _shared_encoder(canonical_base_model_id(model))


@functools.lru_cache(maxsize=4)
def _shared_encoder(model_id: str) -> TextEncoder:
    return TextEncoder(model_id)


@functools.lru_cache(maxsize=512)
def _sketch(module: str, out_features: int, in_features: int, dim: int, seed: int):
    """Fixed random maps for one module: probes Q (out, p), P (in, p) and projection G (dim, p·p), float64.

    Seeded from the module path and shape, so every process and every adapter uses the same maps.
    """
    key = zlib.crc32(f"{seed}|{module}|{out_features}|{in_features}|{dim}".encode())
    g = torch.Generator().manual_seed(key)
    q = torch.randn(out_features, _PROBES, generator=g, dtype=torch.float64) / out_features**0.5
    p = torch.randn(in_features, _PROBES, generator=g, dtype=torch.float64) / in_features**0.5
    proj = torch.randn(dim, _PROBES * _PROBES, generator=g, dtype=torch.float64) / dim**0.5
    return q, p, proj


def weight_embedding(adapter: LoraAdapter, dim: int = WEIGHT_DIM, seed: int = 0) -> np.ndarray:
    """A gauge-invariant embedding of an adapter: a fixed linear sketch of every module's ΔW, L2-normalised.

    For each module, ΔW = s·B·A (out, in) is sketched as Qᵀ ΔW P (16, 16) with fixed random Gaussian probes, then
    mapped to `dim` by a fixed random projection; the modules' contributions are summed and the result normalised.
    The sketch is linear in ΔW and never looks at A or B alone, so (B·R, R⁻¹·A) gives the same embedding as (B, A)
    for any invertible R, and inner products of embeddings approximate cosine similarities of the stacked ΔW
    (Johnson–Lindenstrauss), so similar adapters land near each other. Computed in float64.

    Args:
        adapter: any adapter (canonical or not; scaling and rsLoRA are accounted for).
        dim: embedding length.
        seed: seed of the random maps (keep the default: every embedding in a bank must use the same maps).

    Returns:
        (dim,) float32 vector with unit norm (all zeros if ΔW is zero).
    """
    z = torch.zeros(dim, dtype=torch.float64)
    for module, a, b in adapter.items():
        out_features, in_features = b.shape[0], a.shape[1]
        q, p, proj = _sketch(module, out_features, in_features, dim, seed)
        a64 = a.detach().to("cpu", torch.float64)  # (r, in)
        b64 = b.detach().to("cpu", torch.float64)  # (out, r)
        core = (q.T @ b64) @ (a64 @ p) * adapter.scaling  # (p, r) @ (r, p) -> (p, p) = Qᵀ ΔW P
        z += proj @ core.reshape(-1)
    norm = torch.linalg.vector_norm(z)
    if norm > 0:
        z = z / norm
    return z.to(torch.float32).numpy()
