"""The condition: a task description (plus optional label names and labelled examples) as tokens for the CVAE.

Free text is the main path (Text-to-LoRA's condition): the whole description's embedding is always a condition
token, and a task without labels (a generation task) is conditioned on nothing else. On top of it, a description
that clearly names label indices ("label 0 if Polish, label 1 if Czech") is read structurally
(`bank.describe.segment_description`): each clause naming a label index goes to that slot and is embedded on its
own with the index words removed, so "Polish" in slot 0 and "Polish" in slot 1 embed alike and the slot position
alone says which label it is (a mean-pooled embedding cannot tell that description from its reverse: cosine
0.998, issue 5, pitfall 1). Label names and labelled examples (embedded and averaged per label) are further
per-slot channels: they state the mapping outright (pitfall 3).

Every channel is whitened with statistics fitted on the training set and stored in the checkpoint (pitfall 2:
without whitening, end-to-end training stalled at one class for every task).

Layout of one condition (S = max_slots, D = text_dim, C = 3 channels: 0 description clause, 1 label name, 2 examples):
    slots (S, C, D) raw embeddings, present (S, C) bool, n_slots int (0 for a generation task), global (D,).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from loragen.bank.describe import label_indices, segment_description

CHANNELS = ("description", "label", "examples")
SEGMENT, LABEL, EXAMPLES = range(3)

TextEncode = Callable[[Sequence[str]], np.ndarray]


def count_slots(
    description: str,
    labels: Sequence[str] | None,
    examples: Sequence[tuple[str, int]] | None,
    max_slots: int,
) -> int:
    """How many classes a request has: from the label names, else the example labels and the description's indices.

    Raises:
        ValueError: more classes than the model has slots.
    """
    if labels:
        n = len(labels)
    else:
        # Numbers beyond the slot count are not label indices ("classify the 100 sentences").
        seen = [i for i in label_indices(description) if i < max_slots] + [y for _, y in examples or ()]
        n = max([1, *seen]) + 1
    if n > max_slots:
        raise ValueError(
            f"the request has {n} classes but this hypernetwork was trained for at most {max_slots}; "
            "name fewer classes or train with a larger condition.max_slots"
        )
    return max(n, 2)


@dataclass
class RawCondition:
    """Raw (unwhitened) condition embeddings for one request.

    Attributes:
        slots: (S, C, D) float32 embeddings per slot and channel (zeros where absent).
        present: (S, C) bool, which slot/channel entries are filled.
        n_slots: number of classes of the task (slots beyond it are padding).
        glob: (D,) the whole description's embedding.
    """

    slots: torch.Tensor
    present: torch.Tensor
    n_slots: int
    glob: torch.Tensor


@dataclass
class ConditionTexts:
    """The texts a request turns into, before embedding (so a batch of requests is embedded in one call)."""

    description: str
    segments: dict[int, str]
    labels: tuple[str, ...] | None
    examples: tuple[tuple[str, int], ...] | None
    n_slots: int


def condition_texts(
    description: str,
    labels: Sequence[str] | None,
    examples: Sequence[tuple[str, int]] | None,
    max_slots: int,
    label_slots: bool = True,
) -> ConditionTexts:
    """Parse one request into the texts to embed (see `segment_description`, `count_slots`).

    Args:
        description, labels, examples: the request.
        max_slots: the model's slots.
        label_slots: False reads the description as free text only (no slots: how generation tasks, which have no
            labels, are conditioned); then `labels` and `examples` must be None.
    """
    if not label_slots:
        if labels or examples:
            raise ValueError("a free-text (generation) condition takes no label names or labelled examples")
        return ConditionTexts(description, {}, None, None, 0)
    n = count_slots(description, labels, examples, max_slots)
    segments = {k: v for k, v in segment_description(description, max_slots).items() if k < n}
    return ConditionTexts(description, segments, tuple(labels) if labels else None,
                          tuple(examples) if examples else None, n)


def embed_conditions(
    requests: Sequence[ConditionTexts],
    encode: TextEncode,
    max_slots: int,
    text_dim: int,
    example_vectors: Sequence[np.ndarray | None] | None = None,
    global_text: str = "always",
) -> list[RawCondition]:
    """Embed many parsed requests with one encoder call.

    Args:
        requests: parsed requests.
        encode: texts -> (n, D) L2-normalised embeddings (the bank's TextEncoder).
        max_slots: S.
        text_dim: D.
        example_vectors: optional precomputed (n_examples, D) embeddings per request, in the order of its
            `examples` (training embeds each task's example pool once; generation passes None).
        global_text: "always" embeds every whole description; "fallback" only those whose clauses do not cover
            every class (the others get a zero global vector). A description without label clauses (free text)
            is always embedded: it is the whole condition.
    """
    with_global = [global_text == "always" or not req.segments or len(req.segments) < req.n_slots
                   for req in requests]
    texts: list[str] = []
    for i, req in enumerate(requests):
        if with_global[i]:
            texts.append(req.description)
        texts.extend(req.segments.values())
        texts.extend(req.labels or ())
        if req.examples and (example_vectors is None or example_vectors[i] is None):
            texts.extend(t for t, _ in req.examples)
    vectors = torch.as_tensor(np.asarray(encode(texts), dtype=np.float32)) if texts else torch.zeros(0, text_dim)
    out, pos = [], 0
    for i, req in enumerate(requests):
        slots = torch.zeros(max_slots, len(CHANNELS), text_dim)
        present = torch.zeros(max_slots, len(CHANNELS), dtype=torch.bool)
        glob = vectors[pos] if with_global[i] else torch.zeros(text_dim)
        pos += int(with_global[i])
        for k in req.segments:
            slots[k, SEGMENT], present[k, SEGMENT] = vectors[pos], True
            pos += 1
        for k, _ in enumerate(req.labels or ()):
            slots[k, LABEL], present[k, LABEL] = vectors[pos], True
            pos += 1
        if req.examples:
            pre = example_vectors[i] if example_vectors is not None else None
            if pre is None:
                ex = vectors[pos : pos + len(req.examples)]
                pos += len(req.examples)
            else:
                ex = torch.as_tensor(pre, dtype=torch.float32)
            _pool_examples(slots, present, ex, [y for _, y in req.examples], req.n_slots)
        out.append(RawCondition(slots, present, req.n_slots, glob))
    return out


def _pool_examples(slots: torch.Tensor, present: torch.Tensor, ex: torch.Tensor, ys: list[int], n: int) -> None:
    """Average the example embeddings per label into the examples channel (in place)."""
    y = torch.as_tensor(ys)
    for k in range(n):
        mask = y == k
        if mask.any():
            slots[k, EXAMPLES] = ex[mask].mean(0)
            present[k, EXAMPLES] = True


def collate_conditions(conds: Sequence[RawCondition]) -> dict[str, torch.Tensor]:
    """Stack conditions into a batch: slots (B, S, C, D), present (B, S, C), slot_mask (B, S), glob (B, D)."""
    slots = torch.stack([c.slots for c in conds])
    present = torch.stack([c.present for c in conds])
    n = torch.as_tensor([c.n_slots for c in conds])
    slot_mask = torch.arange(slots.shape[1])[None, :] < n[:, None]
    return {"slots": slots, "present": present, "slot_mask": slot_mask, "glob": torch.stack([c.glob for c in conds])}


class Whitener(nn.Module):
    """Shrunk PCA whitening of one embedding channel: x -> (x - mean) @ W, W = V (Λ + ε·mean(Λ))^-1/2 Vᵀ.

    The statistics are buffers, so they travel in the checkpoint's state dict.
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("transform", torch.eye(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Fit on (N, D) samples (N >= 2); fewer leaves the identity, which is still a valid (unwhitened) map."""
        if x.shape[0] < 2:
            return
        x = x.to(torch.float64)
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / (x.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        if float(evals.clamp_min(0).mean()) <= 1e-12:  # a constant channel (e.g. never filled): nothing to whiten
            return
        evals = evals.clamp_min(0) + self.eps * evals.clamp_min(0).mean()
        self.mean.copy_(mean.to(self.mean.dtype))
        self.transform.copy_((evecs * evals.rsqrt()) @ evecs.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.transform


class ConditionEncoder(nn.Module):
    """Whitened slot channels -> condition tokens (B, S + 1, d_model) with a key padding mask.

    Each slot token is an MLP of its whitened channels and their presence flags, plus a slot-position embedding
    (the position is what says "label k"); one extra token carries the whitened global description embedding.
    """

    def __init__(self, text_dim: int, d_model: int, max_slots: int, eps: float, whiten: bool = True) -> None:
        super().__init__()
        n_ch = len(CHANNELS)
        self.whiten = whiten
        self.whiteners = nn.ModuleList([Whitener(text_dim, eps) for _ in range(n_ch + 1)])  # + global
        self.slot_mlp = nn.Sequential(
            nn.Linear(n_ch * text_dim + n_ch, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
        )
        self.glob_proj = nn.Sequential(nn.Linear(text_dim, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.slot_pos = nn.Parameter(torch.randn(max_slots, d_model) * 0.02)
        self.glob_pos = nn.Parameter(torch.randn(d_model) * 0.02)

    def fit_whitening(self, slots: torch.Tensor, present: torch.Tensor, glob: torch.Tensor) -> None:
        """Fit each channel's whitener on the present entries of a training set (slots (N,S,C,D), glob (N,D))."""
        for c in range(len(CHANNELS)):
            self.whiteners[c].fit(slots[:, :, c][present[:, :, c]])
        self.whiteners[-1].fit(glob)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns tokens (B, S+1, d) and padding mask (B, S+1), True where a token is padding."""
        slots, present = batch["slots"], batch["present"]  # (B, S, C, D), (B, S, C)
        chans = []
        for c in range(len(CHANNELS)):
            x = slots[:, :, c]
            if self.whiten:
                x = self.whiteners[c](x)
            chans.append(x * present[:, :, c, None])  # absent entries are exactly zero after whitening too
        feats = torch.cat(chans + [present.to(slots.dtype)], dim=-1)  # (B, S, C*D + C)
        tokens = self.slot_mlp(feats) + self.slot_pos  # (B, S, d)
        glob = batch["glob"]
        if self.whiten:
            glob = self.whiteners[-1](glob)
        glob_tok = (self.glob_proj(glob) + self.glob_pos)[:, None]  # (B, 1, d)
        pad = torch.cat([~batch["slot_mask"], torch.zeros_like(batch["slot_mask"][:, :1])], dim=1)
        return torch.cat([tokens, glob_tok], dim=1), pad
