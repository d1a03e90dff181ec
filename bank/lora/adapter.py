"""`LoraAdapter`: the one in-memory form of a LoRA adapter that bank, hypernet, meta and api share.

Conventions follow LoRA (Hu et al., 2021, https://arxiv.org/abs/2106.09685) and PEFT:
for a linear layer y = W x with W of shape (out_features, in_features), the adapter adds
ΔW = scaling · B @ A, with A = lora_A of shape (r, in_features), B = lora_B of shape (out_features, r),
and scaling = lora_alpha / r (or lora_alpha / sqrt(r) with rsLoRA).

Module keys are full module paths relative to the base model object, e.g.
"encoder.layer.0.attention.self.query" for a `transformers` BertModel.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from loragen.bank.device import dtype_name
from loragen.bank.errors import AdapterShapeError, NonFiniteError


@dataclass
class LoraAdapter:
    """A LoRA adapter: per-module factors plus the config that gives them meaning.

    Args:
        base_model: id or path of the model the adapter was trained for.
        r: rank shared by every module.
        lora_alpha: LoRA alpha; scaling = lora_alpha / r (lora_alpha / sqrt(r) when `use_rslora`).
        lora_A: module path -> A, shape (r, in_features).
        lora_B: module path -> B, shape (out_features, r).
        target_modules: the short module names the adapter targets ("query", "q_proj", ...).
            Derived from the module paths when not given.
        fan_in_fan_out: the base layers store W as (in, out) (GPT-2's Conv1D), as in PEFT.
        use_rslora: rank-stabilised scaling alpha / sqrt(r).
        metadata: free JSON-serialisable metadata (task, description, provenance, metrics).

    Raises:
        AdapterShapeError: factors that do not agree with `r` or with each other.
    """

    base_model: str
    r: int
    lora_alpha: float
    lora_A: dict[str, torch.Tensor]
    lora_B: dict[str, torch.Tensor]
    target_modules: list[str] = field(default_factory=list)
    fan_in_fan_out: bool = False
    use_rslora: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.target_modules:
            self.target_modules = sorted({name.rsplit(".", 1)[-1] for name in self.lora_A})
        problems = self._shape_problems()
        if problems:
            raise AdapterShapeError("invalid LoRA adapter:\n  - " + "\n  - ".join(problems))

    def _shape_problems(self) -> list[str]:
        problems: list[str] = []
        if not isinstance(self.r, int) or self.r < 1:
            problems.append(f"r must be a positive integer, got {self.r!r}")
        if not _finite_number(self.lora_alpha):
            problems.append(f"lora_alpha must be a finite number, got {self.lora_alpha!r}")
        if not self.lora_A:
            problems.append("the adapter has no modules (lora_A is empty)")
        if set(self.lora_A) != set(self.lora_B):
            only_a = sorted(set(self.lora_A) - set(self.lora_B))
            only_b = sorted(set(self.lora_B) - set(self.lora_A))
            problems.append(f"lora_A and lora_B name different modules (only A: {only_a}, only B: {only_b})")
            return problems
        for name in sorted(self.lora_A):
            a, b = self.lora_A[name], self.lora_B[name]
            if a.ndim != 2 or b.ndim != 2:
                problems.append(f"{name}: A and B must be 2-d, got {tuple(a.shape)} and {tuple(b.shape)}")
            elif a.shape[0] != self.r or b.shape[1] != self.r:
                problems.append(
                    f"{name}: rank does not match r={self.r}: lora_A {tuple(a.shape)} (expects (r, in)), "
                    f"lora_B {tuple(b.shape)} (expects (out, r))"
                )
            elif a.dtype != b.dtype:
                problems.append(f"{name}: A is {a.dtype} but B is {b.dtype}")
            elif not a.is_floating_point():  # integer/bool/complex factors break every ΔW computation
                problems.append(f"{name}: factors must be floating point, got {a.dtype}")
        return problems

    # ---- derived quantities -------------------------------------------------------------------------
    @property
    def scaling(self) -> float:
        """The factor in ΔW = scaling · B @ A."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @property
    def modules(self) -> list[str]:
        """Module paths in a fixed (sorted) order."""
        return sorted(self.lora_A)

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.lora_A.values())).dtype

    @property
    def device(self) -> torch.device:
        return next(iter(self.lora_A.values())).device

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Module path -> (out_features, in_features) of the base weight ΔW is added to (before any transpose)."""
        return {m: (self.lora_B[m].shape[0], self.lora_A[m].shape[1]) for m in self.modules}

    def num_parameters(self) -> int:
        return sum(self.lora_A[m].numel() + self.lora_B[m].numel() for m in self.modules)

    def items(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """Yield (module, A, B) in module order."""
        for m in self.modules:
            yield m, self.lora_A[m], self.lora_B[m]

    def delta_weight(self, module: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """ΔW for one module as (out_features, in_features), computed in `dtype` (fp32 by default)."""
        a, b = self.lora_A[module].to(dtype), self.lora_B[module].to(dtype)
        return (b @ a) * self.scaling

    # ---- checks -------------------------------------------------------------------------------------
    def check_finite(self) -> None:
        """Raise NonFiniteError naming every module whose factors hold NaN or Inf."""
        tensors = [t for _, a, b in self.items() for t in (a, b) if t.numel()]
        # Fast path: one multi-tensor norm pass (reads every factor once) is finite iff no NaN/Inf, except that huge
        # finite values can overflow the norm; only then (or on a real NaN/Inf) look module by module.
        if not tensors:
            return
        one_device = len({t.device for t in tensors}) == 1
        if one_device and bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors))).all()):
            return
        bad = [m for m, a, b in self.items() if not (torch.isfinite(a).all() and torch.isfinite(b).all())]
        if bad:
            raise NonFiniteError(f"adapter has NaN/Inf values in {len(bad)} module(s): {bad[:5]}")

    def sha256(self) -> str:
        """Checksum of the tensors and the config that gives them meaning (not of the free metadata)."""
        h = hashlib.sha256()
        h.update(f"r={self.r};alpha={self.lora_alpha};rslora={self.use_rslora};fifo={self.fan_in_fan_out}".encode())
        for m, a, b in self.items():
            for tag, t in (("A", a), ("B", b)):
                t = t.detach().contiguous().cpu()
                h.update(f"{m}.{tag}:{dtype_name(t.dtype)}:{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    # ---- conversions --------------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LoraAdapter:
        """A copy with every factor moved/cast (the config and metadata are shared)."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        return replace(
            self,
            lora_A={m: move(t) for m, t in self.lora_A.items()},
            lora_B={m: move(t) for m, t in self.lora_B.items()},
        )

    def with_metadata(self, **updates: Any) -> LoraAdapter:
        """A copy sharing the tensors, with metadata updated."""
        return replace(self, metadata={**self.metadata, **updates})

    def flat_parameters(self) -> torch.Tensor:
        """All factors flattened into one vector, module by module (A then B): the layout generators learn."""
        return torch.cat([torch.cat([a.reshape(-1), b.reshape(-1)]) for _, a, b in self.items()])

    def from_flat(self, flat: torch.Tensor, **overrides: Any) -> LoraAdapter:
        """Inverse of `flat_parameters`: an adapter with this one's layout filled from `flat`.

        Raises:
            AdapterShapeError: `flat` has the wrong length.
        """
        if flat.ndim != 1 or flat.numel() != self.num_parameters():
            raise AdapterShapeError(
                f"flat parameter vector has shape {tuple(flat.shape)}, expected ({self.num_parameters()},)"
            )
        lora_A, lora_B, i = {}, {}, 0
        for m, a, b in self.items():
            lora_A[m] = flat[i : i + a.numel()].view_as(a)
            i += a.numel()
            lora_B[m] = flat[i : i + b.numel()].view_as(b)
            i += b.numel()
        return replace(self, lora_A=lora_A, lora_B=lora_B, **overrides)


def _finite_number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def stack_shapes(adapter: LoraAdapter) -> Mapping[tuple[int, int], list[str]]:
    """Group module paths by their (out, in) shape, so work can be batched across same-shaped modules."""
    groups: dict[tuple[int, int], list[str]] = {}
    for m, shape in adapter.shapes().items():
        groups.setdefault(shape, []).append(m)
    return groups
