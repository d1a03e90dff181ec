"""Merge LoRA adapters into a base model in place, unmerge them, and combine several adapters into one.

Merging adds W += Σ_i w_i · s_i · B_i A_i to every targeted weight. The adapters' factors are concatenated along
the rank axis, so each layer gets one fused `addmm_` whatever the number of adapters: no (out × in) delta is ever
materialised for fp32/fp64 weights (PEFT's `merge_and_unload` builds ΔW, scales it, then adds it: several full
passes over memory). Lower-precision weights are updated in row blocks that are upcast to fp32, accumulated and
cast back, so rounding happens once. Everything runs on the device the weights are on.

Combination methods (`combine`):
- "linear": exact, rank = Σ r_i (factors concatenated);
- "svd": linear, then the best rank-k approximation (canonical SVD truncation);
- "ties": TIES-merging (Yadav et al., 2023, https://arxiv.org/abs/2306.01708): trim each ΔW to its top-`density`
  magnitudes, elect a sign per entry by total mass, average the agreeing entries; then refactor to rank k by SVD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from loragen.bank.errors import AdapterShapeError, ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import canonicalize, dense_factors
from loragen.bank.lora.layers import target_weights

CombineMethod = Literal["linear", "svd", "ties"]
# Row-block size (elements) for low-precision weights: big enough to amortise the call, small enough for cache.
_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class LowRankUpdate:
    """ΔW = alpha · b @ a for one module, with the factors in fp32 on the weight's device.

    A single adapter's factors are used as they are when already fp32 (its scaling goes into `alpha`), so a merge
    copies nothing; several adapters are concatenated along the rank axis with their scalings folded into `b`.
    """

    b: torch.Tensor
    a: torch.Tensor
    alpha: float = 1.0


@dataclass
class MergeHandle:
    """What `merge` did, so that `unmerge` can undo it exactly.

    Attributes:
        model: the model that was modified.
        factors: module -> the low-rank update that was added, on the layer's device (it may share storage
            with the merged adapter's factors: do not modify an adapter in place while it is merged).
        originals: module -> original weight copy, kept for low-precision weights where subtracting again
            would not restore the bits exactly.
    """

    model: nn.Module
    factors: dict[str, LowRankUpdate]
    originals: dict[str, torch.Tensor] = field(default_factory=dict)
    merged: bool = True

    def unmerge(self) -> None:
        """Restore every merged weight (bit-exact where originals were kept, else W -= ΔW in fp32)."""
        if not self.merged:
            raise RuntimeError("these adapters were already unmerged; unmerging twice would corrupt the weights.")
        weights = dict(self.model.named_modules())
        with torch.no_grad():
            for name, update in self.factors.items():
                weight = weights[name].weight
                if name in self.originals:
                    weight.copy_(self.originals[name])
                else:
                    _add_low_rank(weight, update, _is_transposed(weights[name]), sign=-1.0)
        self.originals.clear()
        self.merged = False


def _is_transposed(module: nn.Module) -> bool:
    return not isinstance(module, nn.Linear)


def merge(
    model: nn.Module,
    adapters: LoraAdapter | Sequence[LoraAdapter],
    weights: Sequence[float] | None = None,
    *,
    method: CombineMethod = "linear",
    rank: int | None = None,
    density: float = 0.2,
    keep_original: bool | None = None,
) -> MergeHandle:
    """Merge one or several adapters into `model`'s weights, in place.

    Args:
        model: a transformers (or any torch) model holding the targeted linear layers.
        adapters: one adapter or several.
        weights: one weight per adapter (default 1.0 each).
        method: how several adapters are combined (see module docstring); "linear" is exact.
        rank: the target rank of "svd"/"ties" (default: the largest input rank).
        density: the fraction of entries "ties" keeps per adapter.
        keep_original: keep copies of the original weights for a bit-exact `unmerge` (default: only for
            dtypes below fp32, where subtracting again would round).

    Returns:
        A handle whose `unmerge()` restores the model.

    Raises:
        AdapterShapeError: an adapter does not fit the model; no weight is modified.
        NonFiniteError: an adapter holds NaN/Inf; no weight is modified.
    """
    adapters = [adapters] if isinstance(adapters, LoraAdapter) else list(adapters)
    if method != "linear" and len(adapters) > 1:
        adapters, weights = [combine(adapters, weights, method=method, rank=rank, density=density)], None
    weights = _check_weights(adapters, weights)
    layers: dict[str, tuple[torch.Tensor, bool]] = {}
    for adapter in adapters:  # validate everything before touching any weight
        adapter.check_finite()
        layers.update(target_weights(model, adapter))
    factors = fused_factors(adapters, weights, devices={m: w.device for m, (w, _) in layers.items()})
    handle = MergeHandle(model=model, factors=factors)
    with torch.no_grad():
        for name, update in factors.items():
            weight, transposed = layers[name]
            keep = keep_original if keep_original is not None else weight.dtype not in (torch.float32, torch.float64)
            if keep:
                handle.originals[name] = weight.detach().clone()
            _add_low_rank(weight, update, transposed)
    return handle


def _check_weights(adapters: Sequence[LoraAdapter], weights: Sequence[float] | None) -> list[float]:
    if not adapters:
        raise ConfigError("no adapters to merge.")
    if weights is None:
        return [1.0] * len(adapters)
    if len(weights) != len(adapters):
        raise ConfigError(f"got {len(weights)} weights for {len(adapters)} adapters; give one weight per adapter.")
    return [float(w) for w in weights]


def fused_factors(
    adapters: Sequence[LoraAdapter],
    weights: Sequence[float],
    devices: dict[str, torch.device] | None = None,
) -> dict[str, LowRankUpdate]:
    """Per module, one update with B' = [w_1 s_1 B_1 | w_2 s_2 B_2 | ...] and A' = [A_1; A_2; ...] in fp32.

    B' @ A' equals the weighted sum of the adapters' ΔW, so one matmul applies them all. A module that only one
    adapter targets keeps that adapter's factors (no copy when already fp32) with w·s as the update's alpha.
    """
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
    for adapter, w in zip(adapters, weights):
        factor = w * adapter.scaling
        for m, a, b in adapter.items():
            device = devices[m] if devices else a.device
            fp32 = dict(device=device, dtype=torch.float32)
            parts.setdefault(m, []).append((b.to(**fp32), a.to(**fp32), factor))
    fused = {}
    for m, ps in parts.items():
        if len(ps) == 1:
            fused[m] = LowRankUpdate(*ps[0])
        else:
            b = torch.cat([b * factor for b, _, factor in ps], dim=1)
            fused[m] = LowRankUpdate(b, torch.cat([a for _, a, _ in ps], dim=0))
    return fused


def _add_low_rank(weight: torch.Tensor, update: LowRankUpdate, transposed: bool, sign: float = 1.0) -> None:
    """weight += sign · alpha · b @ a (or its transpose for (in, out) weights), accumulating in fp32."""
    w, alpha = weight.data, sign * update.alpha
    b, a = update.b, update.a
    left, right = (a.T, b.T) if transposed else (b, a)  # w is (rows, cols) = left @ right
    if w.dtype in (torch.float32, torch.float64):
        w.addmm_(left.to(w.dtype), right.to(w.dtype), alpha=alpha)
        return
    rows = max(1, _BLOCK_ELEMENTS // max(1, w.shape[1]))
    for start in range(0, w.shape[0], rows):
        block = w[start : start + rows]
        acc = block.float().addmm_(left[start : start + rows], right, alpha=alpha)
        block.copy_(acc)


def combine(
    adapters: Sequence[LoraAdapter],
    weights: Sequence[float] | None = None,
    *,
    method: CombineMethod = "linear",
    rank: int | None = None,
    density: float = 0.2,
) -> LoraAdapter:
    """Combine several adapters for the same base model into one adapter.

    Returns:
        A new adapter covering the union of the inputs' modules. "linear" has rank Σ r_i (modules missing from
        an input get zero factors); "svd" and "ties" have rank `rank` (default: the largest input rank) and are
        in canonical form.

    Raises:
        ConfigError: unknown method, mismatched weights, or adapters for different base models.
        AdapterShapeError: two adapters disagree on a module's shape.
    """
    weights = _check_weights(adapters, weights)
    bases = {a.base_model for a in adapters}
    if len(bases) > 1:
        raise ConfigError(f"cannot combine adapters for different base models: {sorted(bases)}")
    shapes: dict[str, tuple[int, int]] = {}
    for adapter in adapters:
        for m, shape in adapter.shapes().items():
            if shapes.setdefault(m, shape) != shape:
                raise AdapterShapeError(f"{m}: adapters disagree on its shape ({shapes[m]} vs {shape}).")
    padded = [_pad_modules(a, shapes) for a in adapters]
    fused = {m: (u.b * u.alpha, u.a) for m, u in fused_factors(padded, weights).items()}
    k = rank or max(a.r for a in adapters)
    first = adapters[0]
    meta = {"combined_from": [a.metadata.get("id") for a in adapters], "combine_method": method, "weights": weights}
    linear = LoraAdapter(
        base_model=first.base_model,
        r=sum(a.r for a in adapters),
        lora_alpha=float(sum(a.r for a in adapters)),
        lora_A={m: a for m, (_, a) in fused.items()},
        lora_B={m: b for m, (b, _) in fused.items()},
        fan_in_fan_out=first.fan_in_fan_out,
        metadata=meta,
    )
    if method == "linear":
        return linear
    if method == "svd":
        return canonicalize(linear, rank=min(k, linear.r))
    if method == "ties":
        return _ties(padded, weights, k, density, meta)
    raise ConfigError(f"unknown combine method {method!r}; use 'linear', 'svd' or 'ties'.")


def _pad_modules(adapter: LoraAdapter, shapes: dict[str, tuple[int, int]]) -> LoraAdapter:
    """`adapter` extended with zero factors on modules it does not target."""
    missing = [m for m in shapes if m not in adapter.lora_A]
    if not missing:
        return adapter
    zeros = dict(dtype=adapter.dtype, device=adapter.device)
    lora_A = {**adapter.lora_A, **{m: torch.zeros(adapter.r, shapes[m][1], **zeros) for m in missing}}
    lora_B = {**adapter.lora_B, **{m: torch.zeros(shapes[m][0], adapter.r, **zeros) for m in missing}}
    return replace(adapter, lora_A=lora_A, lora_B=lora_B)


def _ties(adapters: Sequence[LoraAdapter], weights: Sequence[float], k: int, density: float, meta: dict):
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be in (0, 1], got {density}")
    lora_A, lora_B = {}, {}
    for m in adapters[0].modules:
        deltas = torch.stack([w * ad.delta_weight(m) for ad, w in zip(adapters, weights)])  # (n, out, in)
        flat = deltas.reshape(len(adapters), -1)
        keep = max(1, int(round(density * flat.shape[1])))
        threshold = flat.abs().kthvalue(flat.shape[1] - keep + 1, dim=1, keepdim=True).values
        trimmed = torch.where(flat.abs() >= threshold, flat, torch.zeros_like(flat))
        sign = torch.sign(trimmed.sum(dim=0, keepdim=True))
        agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
        merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
        b, a, _ = dense_factors(merged.view(deltas.shape[1:]), k)
        if b.shape[1] < k:  # ΔW smaller than the rank asked for: pad with zero components
            b = torch.cat([b, b.new_zeros(b.shape[0], k - b.shape[1])], dim=1)
            a = torch.cat([a, a.new_zeros(k - a.shape[0], a.shape[1])], dim=0)
        lora_B[m], lora_A[m] = b.contiguous(), a.contiguous()
    return LoraAdapter(
        base_model=adapters[0].base_model,
        r=k,
        lora_alpha=float(k),
        lora_A=lora_A,
        lora_B=lora_B,
        fan_in_fan_out=adapters[0].fan_in_fan_out,
        metadata={**meta, "canonical": True, "density": density},
    )
