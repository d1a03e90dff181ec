"""Canonical (gauge-fixed) form of a LoRA adapter.

Only ΔW = s·B·A matters: (B·R, R⁻¹·A) is the same adapter for any invertible R. The canonical form picks one
representative: with the thin SVD s·B·A = U S Vᵀ,  B' = U √S,  A' = √S Vᵀ,  lora_alpha' = r' (scaling 1), and each
component's sign fixed so that the largest-magnitude entry of its column of U is positive. Equal ΔW then give
equal tensors (up to float error, and up to rotations inside exactly repeated singular values). Truncating to the
top-k components gives the best rank-k approximation of ΔW (Eckart–Young).

The SVD of the (out × in) product is never formed: QR of B and Aᵀ reduces it to an r × r SVD, batched over
modules of the same shape, in float64.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from loragen.bank.lora.adapter import LoraAdapter, stack_shapes


def canonical_factors(
    b: torch.Tensor, a: torch.Tensor, scaling: float | torch.Tensor = 1.0, rank: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical factors of ΔW = scaling · b @ a, batched over leading dimensions.

    Args:
        b: (..., out, r) factors.
        a: (..., r, in) factors.
        scaling: scalar (or broadcastable (...,) tensor) folded into the result.
        rank: keep the top `rank` components (default: all r). Components beyond ΔW's true rank are zero.

    Returns:
        (B', A', S): B' (..., out, k), A' (..., k, in) in the input dtype, and singular values S (..., k) in float64.
    """
    dtype = a.dtype
    r = a.shape[-2]
    k = r if rank is None else rank
    if not 1 <= k <= r:
        raise ValueError(f"rank must be in [1, {r}], got {rank}")
    b64, a64 = b.to(torch.float64), a.to(torch.float64)
    scaling = torch.as_tensor(scaling, dtype=torch.float64, device=a.device)
    qb, rb = torch.linalg.qr(b64)  # (..., out, r), (..., r, r)
    qa, ra = torch.linalg.qr(a64.transpose(-1, -2))  # (..., in, r), (..., r, r)
    core = rb @ ra.transpose(-1, -2) * scaling.reshape(scaling.shape + (1, 1))  # (..., r, r)
    u, s, vh = torch.linalg.svd(core)
    left = qb @ u[..., :k]  # (..., out, k)
    right = vh[..., :k, :] @ qa.transpose(-1, -2)  # (..., k, in)
    return _signed_split(left, s[..., :k], right, dtype)


def dense_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical rank-`rank` factors (B', A', S) of a dense (..., out, in) matrix, by truncated SVD in float64."""
    u, s, vh = torch.linalg.svd(delta.to(torch.float64), full_matrices=False)
    k = min(rank, s.shape[-1])
    return _signed_split(u[..., :k], s[..., :k], vh[..., :k, :], delta.dtype)


def _signed_split(left: torch.Tensor, s: torch.Tensor, right: torch.Tensor, dtype: torch.dtype):
    """Fix each component's sign, drop numerically-zero components, split √S between the two factors."""
    # Sign rule: the largest-|.| entry of each left singular vector is positive.
    idx = left.abs().argmax(dim=-2, keepdim=True)  # (..., 1, k)
    sign = torch.sign(torch.gather(left, -2, idx))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    left = left * sign
    right = right * sign.transpose(-1, -2)
    # Components that carry no signal are arbitrary in the SVD: zero them so they are canonical too.
    tol = s[..., :1] * max(left.shape[-2], right.shape[-1]) * torch.finfo(torch.float64).eps
    s = torch.where(s > tol, s, torch.zeros_like(s))
    root = s.sqrt()
    return (left * root.unsqueeze(-2)).to(dtype), (right * root.unsqueeze(-1)).to(dtype), s


def canonicalize(adapter: LoraAdapter, rank: int | None = None) -> LoraAdapter:
    """The canonical form of `adapter` (see module docstring), optionally truncated to `rank`.

    The scaling is folded into the factors: the result has lora_alpha == r and no rsLoRA, and
    `metadata["canonical"] = True`.
    """
    k = adapter.r if rank is None else rank
    lora_A: dict[str, torch.Tensor] = {}
    lora_B: dict[str, torch.Tensor] = {}
    for modules in stack_shapes(adapter).values():
        b = torch.stack([adapter.lora_B[m] for m in modules])
        a = torch.stack([adapter.lora_A[m] for m in modules])
        if k == adapter.r and adapter.scaling == 1.0 and _already_canonical(b, a):
            new_b, new_a = b, a  # keep the exact bytes: canonicalising twice must not change checksums
        else:
            new_b, new_a, _ = canonical_factors(b, a, adapter.scaling, k)
        for i, m in enumerate(modules):
            lora_B[m], lora_A[m] = new_b[i].contiguous(), new_a[i].contiguous()
    return replace(
        adapter,
        r=k,
        lora_alpha=float(k),
        use_rslora=False,
        lora_A=lora_A,
        lora_B=lora_B,
        metadata={**adapter.metadata, "canonical": True},
    )


def _already_canonical(b: torch.Tensor, a: torch.Tensor, tol: float = 1e-5) -> bool:
    """Whether batched factors already are canonical: Bᵀ B = A Aᵀ = diag(S), S descending, signs fixed.

    Checked on the numbers rather than trusted from metadata, so an adapter that merely claims to be canonical
    is still canonicalised.
    """
    b64, a64 = b.to(torch.float64), a.to(torch.float64)
    gram_b = b64.transpose(-1, -2) @ b64  # (..., r, r) = diag(S) when canonical
    gram_a = a64 @ a64.transpose(-1, -2)
    s = torch.diagonal(gram_b, dim1=-2, dim2=-1)
    scale = s.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    off_b = (gram_b - torch.diag_embed(s)).abs().amax(dim=(-2, -1))
    off_a = (gram_a - torch.diag_embed(s)).abs().amax(dim=(-2, -1))
    if ((off_b > tol * scale[..., 0]) | (off_a > tol * scale[..., 0])).any():
        return False
    if (s[..., 1:] > s[..., :-1] * (1 + tol) + tol * scale).any():  # singular values must be descending
        return False
    idx = b64.abs().argmax(dim=-2, keepdim=True)
    lead = torch.gather(b64, -2, idx)
    return bool(((lead > 0) | (s.unsqueeze(-2) <= tol * scale.unsqueeze(-1))).all())


def is_canonical(adapter: LoraAdapter) -> bool:
    return bool(adapter.metadata.get("canonical")) and adapter.lora_alpha == adapter.r and not adapter.use_rslora
