"""The weight space the CVAE generates in: canonical factors (ICM-LoRA's choice) or a shared right subspace.

"canonical": the module tokens of hypernet.layout (SVD canonical B', A'). Gauge-free, but the SVD is not linear
in ΔW: two tasks whose ΔW differ by one class's contribution can have canonical factors that differ everywhere
(components reorder, rotate, flip). Measured on the synthetic bank of tests/unit/hypernet (adapters additive in
the slots): held-out combinations had relative ΔW error > 1.

"subspace" (default): per module, a basis V (in, R) of the right singular subspace of all training ΔW (top R
eigenvectors of Σ_n ΔW_nᵀ ΔW_n), fitted once and stored in the checkpoint. An adapter is represented by
ΔW·V (out, R): linear in ΔW (so sums of tasks are sums of tokens) and gauge-invariant, and it turns back into a
rank-R LoRA directly: B = ΔW·V, A = Vᵀ. The energy of training ΔW the subspace keeps is logged when fitted.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

from loragen.bank.lora.adapter import LoraAdapter
from loragen.hypernet.layout import AdapterLayout

log = logging.getLogger(__name__)

Representation = Literal["subspace", "canonical"]


class WeightSpace(nn.Module):
    """Canonical layout tokens (..., M, T) <-> model tokens (..., M, dim), and model tokens -> `LoraAdapter`.

    Args:
        layout: the adapters' layout.
        kind: "subspace" or "canonical" (see module docstring).
        rank: R, the subspace width (subspace only).
    """

    def __init__(self, layout: AdapterLayout, kind: Representation = "subspace", rank: int = 8) -> None:
        super().__init__()
        self.layout, self.kind = layout, kind
        outs = [o for o, _ in layout.shapes]
        ins = [i for _, i in layout.shapes]
        self.out_max, self.in_max = max(outs), max(ins)
        if kind == "subspace":
            self.rank = rank
            self.dim = self.out_max * rank
            self.register_buffer("basis", torch.zeros(layout.n_modules, self.in_max, rank))  # (M, I, R)
            rows = torch.arange(self.out_max)[None, :, None] < torch.as_tensor(outs)[:, None, None]
            mask = rows.expand(-1, -1, rank).reshape(layout.n_modules, -1)
        elif kind == "canonical":
            self.rank, self.dim = layout.r, layout.token_dim
            mask = layout.token_mask()
        else:
            raise ValueError(f"representation must be 'subspace' or 'canonical', got {kind!r}")
        self.register_buffer("mask", mask, persistent=False)  # (M, dim) valid entries
        self.energy_kept: float | None = None

    def _factors(self, canon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical tokens (N, M, T) -> zero-padded B' (N, M, O, r), A' (N, M, r, I)."""
        r, n = self.layout.r, canon.shape[0]
        b = canon.new_zeros(n, self.layout.n_modules, self.out_max, r)
        a = canon.new_zeros(n, self.layout.n_modules, r, self.in_max)
        for j, (out_f, in_f) in enumerate(self.layout.shapes):
            b[:, j, :out_f] = canon[:, j, : out_f * r].reshape(n, out_f, r)
            a[:, j, :, :in_f] = canon[:, j, out_f * r : out_f * r + r * in_f].reshape(n, r, in_f)
        return b, a

    @torch.no_grad()
    def fit(self, canon: torch.Tensor) -> None:
        """Fit the per-module bases on (N, M, T) canonical training tokens (no-op for "canonical")."""
        if self.kind != "subspace":
            return
        b, a = self._factors(canon.to(torch.float64))
        gram = (b.transpose(-1, -2) @ b)  # (N, M, r, r)
        g = (a.transpose(-1, -2) @ gram @ a).sum(0)  # (M, I, I) = Σ_n ΔWᵀΔW
        evals, evecs = torch.linalg.eigh(g)  # ascending
        top = evecs[..., -self.rank :].flip(-1)  # (M, I, R)
        self.basis.copy_(top.to(self.basis.dtype))
        total = evals.clamp_min(0).sum()
        self.energy_kept = float(evals[..., -self.rank :].clamp_min(0).sum() / total) if total > 0 else 1.0
        log.info("weight subspace R=%d keeps %.4f of the training ΔW energy", self.rank, self.energy_kept)

    def encode(self, canon: torch.Tensor) -> torch.Tensor:
        """Canonical tokens (N, M, T) -> model tokens (N, M, dim)."""
        if self.kind == "canonical":
            return canon
        b, a = self._factors(canon)
        x = b @ (a @ self.basis.to(a.dtype))  # (N, M, O, r) @ (N, M, r, R) -> (N, M, O, R) = ΔW V
        return x.reshape(*x.shape[:2], -1)

    def to_adapter(self, tokens: torch.Tensor, metadata: dict[str, Any] | None = None) -> LoraAdapter:
        """Model tokens (M, dim) -> an adapter (alpha = rank, scaling 1)."""
        if self.kind == "canonical":
            return self.layout.to_adapter(tokens, metadata)
        lora_A, lora_B = {}, {}
        for j, (m, (out_f, in_f)) in enumerate(zip(self.layout.modules, self.layout.shapes)):
            lora_B[m] = tokens[j].reshape(self.out_max, self.rank)[:out_f].contiguous()
            lora_A[m] = self.basis[j, :in_f].T.contiguous().to(tokens.dtype)
        return LoraAdapter(
            base_model=self.layout.base_model, r=self.rank, lora_alpha=float(self.rank), lora_A=lora_A,
            lora_B=lora_B, target_modules=list(self.layout.target_modules),
            fan_in_fan_out=self.layout.fan_in_fan_out, metadata=dict(metadata or {}),
        )
