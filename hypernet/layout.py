"""How a LoRA adapter becomes a sequence of per-module tokens and back.

One token per adapted module: the module's canonical factors (bank.lora.canonical: SVD form, scaling folded in,
alpha = r) flattened as [B (out, r) row-major, A (r, in) row-major], zero-padded to the widest module. The
canonical form removes the (B R, R⁻¹ A) gauge freedom, so equal ΔW give equal tokens and a regression target is
well defined. Each token also gets a layer index and a module-type index for the model's embeddings.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from loragen.bank.errors import AdapterShapeError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.canonical import canonicalize

_LAYER = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class AdapterLayout:
    """The fixed shape of the adapters a hypernetwork generates.

    Attributes:
        base_model: the base model id every adapter is for.
        r: rank of the generated (canonical) adapters.
        modules: module paths, sorted (the token order).
        shapes: per module (out_features, in_features).
        target_modules: short names of the targeted modules.
        fan_in_fan_out: as in PEFT (GPT-2 Conv1D layers).
    """

    base_model: str
    r: int
    modules: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    target_modules: tuple[str, ...]
    fan_in_fan_out: bool = False

    @classmethod
    def of(cls, adapter: LoraAdapter) -> AdapterLayout:
        """The layout of `adapter`."""
        shapes = adapter.shapes()
        return cls(
            base_model=adapter.base_model,
            r=adapter.r,
            modules=tuple(adapter.modules),
            shapes=tuple(shapes[m] for m in adapter.modules),
            target_modules=tuple(sorted(adapter.target_modules)),
            fan_in_fan_out=adapter.fan_in_fan_out,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modules"], d["shapes"], d["target_modules"] = list(self.modules), [list(s) for s in self.shapes], list(
            self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterLayout:
        return cls(
            base_model=d["base_model"],
            r=int(d["r"]),
            modules=tuple(d["modules"]),
            shapes=tuple((int(o), int(i)) for o, i in d["shapes"]),
            target_modules=tuple(d["target_modules"]),
            fan_in_fan_out=bool(d.get("fan_in_fan_out", False)),
        )

    # ---- token geometry ----------------------------------------------------------------------------
    @property
    def n_modules(self) -> int:
        return len(self.modules)

    def token_lengths(self) -> list[int]:
        """Valid entries of each module's token: out·r + r·in."""
        return [o * self.r + self.r * i for o, i in self.shapes]

    @property
    def token_dim(self) -> int:
        return max(self.token_lengths())

    def token_mask(self) -> torch.Tensor:
        """(M, T) bool, True on valid (non-padding) entries."""
        lengths = torch.as_tensor(self.token_lengths())
        return torch.arange(self.token_dim)[None, :] < lengths[:, None]

    def layer_ids(self) -> torch.Tensor:
        """(M,) the first integer in each module path (its layer), 0 when there is none."""
        ids = []
        for m in self.modules:
            hit = _LAYER.search(f".{m}.")
            ids.append(int(hit.group(1)) if hit else 0)
        return torch.as_tensor(ids)

    def type_ids(self) -> torch.Tensor:
        """(M,) index of each module's short name in `target_modules`."""
        names = sorted({m.rsplit(".", 1)[-1] for m in self.modules})
        return torch.as_tensor([names.index(m.rsplit(".", 1)[-1]) for m in self.modules])

    # ---- conversions -------------------------------------------------------------------------------
    def check(self, adapter: LoraAdapter) -> None:
        """Raise AdapterShapeError unless `adapter` has this layout's base model, modules and shapes (any rank: a
        lower one is zero-padded, a higher one truncated to r by `to_tokens`)."""
        problems = []
        if adapter.base_model != self.base_model:
            problems.append(f"base model {adapter.base_model!r}, expected {self.base_model!r}")
        if tuple(adapter.modules) != self.modules:
            extra = sorted(set(adapter.modules) - set(self.modules))[:3]
            missing = sorted(set(self.modules) - set(adapter.modules))[:3]
            problems.append(f"modules differ (extra {extra}, missing {missing})")
        elif tuple(adapter.shapes()[m] for m in self.modules) != self.shapes:
            problems.append("module shapes differ")
        if problems:
            raise AdapterShapeError(f"adapter {adapter.metadata.get('id', '')!s} does not fit the hypernetwork "
                                    f"layout: " + "; ".join(problems))

    def to_tokens(self, adapter: LoraAdapter) -> torch.Tensor:
        """(M, T) float32 tokens of `adapter`'s canonical rank-r form (a lower-rank adapter's canonical factors are
        zero-padded to r: the same ΔW exactly)."""
        self.check(adapter)
        k = min(adapter.r, self.r)
        canon = canonicalize(adapter.to(dtype=torch.float32), rank=k)
        tokens = torch.zeros(self.n_modules, self.token_dim)
        for j, (m, (out_f, in_f)) in enumerate(zip(self.modules, self.shapes)):
            b = torch.zeros(out_f, self.r)
            a = torch.zeros(self.r, in_f)
            b[:, :k], a[:k] = canon.lora_B[m], canon.lora_A[m]
            flat = torch.cat([b.reshape(-1), a.reshape(-1)])
            tokens[j, : flat.numel()] = flat
        return tokens

    def to_adapter(self, tokens: torch.Tensor, metadata: dict[str, Any] | None = None) -> LoraAdapter:
        """An adapter (alpha = r, scaling 1) from (M, T) tokens."""
        lora_A, lora_B = {}, {}
        for j, (m, (out_f, in_f)) in enumerate(zip(self.modules, self.shapes)):
            nb = out_f * self.r
            lora_B[m] = tokens[j, :nb].reshape(out_f, self.r).contiguous()
            lora_A[m] = tokens[j, nb : nb + self.r * in_f].reshape(self.r, in_f).contiguous()
        return LoraAdapter(
            base_model=self.base_model,
            r=self.r,
            lora_alpha=float(self.r),
            lora_A=lora_A,
            lora_B=lora_B,
            target_modules=list(self.target_modules),
            fan_in_fan_out=self.fan_in_fan_out,
            metadata=dict(metadata or {}),
        )
