"""ABMLL's generative model in Pyro: global θ as the prior over task adapters φ_t, a real transformer likelihood.

ABMLL (amortized Bayesian meta-learning for LoRA; ABML by Ravi & Beatson, ICLR 2019, adapted to low-rank adapters):

    θ = (θ_loc, θ_ρ) ~ p(θ)                                   hyperprior, KL weighted by γ
    φ_t ~ N(θ_loc, σ_θ²),  σ_θ = softplus(θ_ρ) + c             per task, KL weighted by β
    y_ti ~ Categorical(f(x_ti; W₀ + s · B_t A_t))              the base model run with φ_t = (A_t, B_t) applied

The likelihood is pluggable (`meta.likelihood`): a classifier as above, or for generation tasks on a causal LM the
mean token log-likelihood of each reference output, added to the ELBO as a factor per example.

Per adapted layer the random variables are the LoRA factors themselves, so both the means (A_μ, B_μ) and the scales
(ρ_A, ρ_B) are LoRA-shaped pairs, and every posterior sample is a valid rank-r adapter that loads in PEFT. The scale
floor c is tied to the pretrained weight: c = scale_floor · std(W₀) per module (different layers live on different
scales). All task parameters share one flat layout (`LoraAdapter.flat_parameters`: module by module, A then B).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from loragen.bank.errors import ConfigError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.meta.config import ABMLLConfig
from loragen.meta.likelihood import CLASSIFIER, Likelihood, as_likelihood

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]


@runtime_checkable
class FactorClassifier(Protocol):
    """A classifier run with LoRA factors applied functionally (every `bank.tasks.Classifier` is one)."""

    def logits_from_factors(self, texts: Sequence[str], factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                            scaling: float, num_labels: int = 2) -> torch.Tensor:
        """Logits (n, num_labels), differentiable in the factors."""
        ...


@dataclass(frozen=True)
class LoraLayout:
    """Which layers a task adapter covers and in which order its factors are flattened.

    Args:
        modules: full module paths, sorted (the `LoraAdapter` order).
        shapes: (out_features, in_features) per module, same order.
        r: rank. lora_alpha: alpha. base_model: id recorded in generated adapters.
    """

    modules: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    r: int
    lora_alpha: float
    base_model: str

    @classmethod
    def from_model(cls, model: nn.Module, config: ABMLLConfig, base_model: str) -> LoraLayout:
        """The layout of `config.target_modules` (in `config.layers`' blocks, or all) in `model`.

        Raises:
            ConfigError: no linear layer matches the targets, or some of `config.layers` hold none (a `ValueError`).
        """
        from loragen.bank.train.lora_module import layer_features, target_module_paths

        modules = tuple(target_module_paths(model, config.target_modules, config.layers))
        named = dict(model.named_modules())
        shapes = tuple(layer_features(named[m])[::-1] for m in modules)  # (out, in)
        return cls(modules, shapes, config.r, config.lora_alpha, base_model)

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    @property
    def sizes(self) -> list[int]:
        """Entries per module (A then B)."""
        return [self.r * i + o * self.r for o, i in self.shapes]

    @property
    def num_parameters(self) -> int:
        return sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> Factors:
        """A flat vector (D,) -> module -> (A (r, in), B (out, r)) views."""
        out, i = {}, 0
        for m, (o, n) in zip(self.modules, self.shapes):
            a = flat[i : i + self.r * n].view(self.r, n)
            i += self.r * n
            b = flat[i : i + o * self.r].view(o, self.r)
            i += o * self.r
            out[m] = (a, b)
        return out

    def to_adapter(self, flat: torch.Tensor, **metadata) -> LoraAdapter:
        """A detached, contiguous `LoraAdapter` from a flat vector."""
        factors = self.unflatten(flat.detach().float().cpu())
        return LoraAdapter(
            base_model=self.base_model,
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_A={m: a.contiguous().clone() for m, (a, _) in factors.items()},
            lora_B={m: b.contiguous().clone() for m, (_, b) in factors.items()},
            metadata=dict(metadata),
        )

    def flatten(self, adapter: LoraAdapter) -> torch.Tensor:
        """An adapter with this layout -> flat vector (D,), with its scaling rescaled into this layout's.

        Raises:
            ValueError: the adapter covers other modules or has another rank.
        """
        if tuple(adapter.modules) != self.modules or adapter.r != self.r:
            raise ValueError(
                f"adapter (r={adapter.r}, {len(adapter.modules)} modules) does not match the ABMLL layout "
                f"(r={self.r}, {len(self.modules)} modules); use the same rank and target modules"
            )
        # ΔW = s·BA: fold a different scaling into B so the same ΔW results under this layout's scaling.
        ratio = adapter.scaling / self.scaling
        return torch.cat([torch.cat([a.reshape(-1), b.reshape(-1) * ratio]) for _, a, b in adapter.items()]).float()

    def to_dict(self) -> dict:
        """The layout as JSON-serialisable data (stored in ABMLL checkpoints)."""
        return {"modules": list(self.modules), "shapes": [list(s) for s in self.shapes], "r": self.r,
                "lora_alpha": self.lora_alpha, "base_model": self.base_model}

    @classmethod
    def from_dict(cls, data: Mapping) -> LoraLayout:
        """Rebuild from `to_dict` output."""
        return cls(tuple(data["modules"]), tuple(tuple(s) for s in data["shapes"]), int(data["r"]),
                   float(data["lora_alpha"]), str(data["base_model"]))


def weight_floor(model: nn.Module, layout: LoraLayout, scale_floor: float) -> torch.Tensor:
    """c per flat entry: `scale_floor` · std of the module's pretrained weight W₀ (both factors of a module). (D,)"""
    named = dict(model.named_modules())
    parts = [torch.full((size,), scale_floor * float(named[m].weight.detach().float().std()))
             for m, size in zip(layout.modules, layout.sizes)]
    return torch.cat(parts)


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y (y > 0), stable for small and large y."""
    return y + torch.log(-torch.expm1(-y))


@dataclass
class TaskBatch:
    """A minibatch of tasks: description embeddings plus labelled examples per task.

    Args:
        embeddings: (T, embed_dim) description embeddings.
        texts: per task, the query texts (inputs) the likelihood is evaluated on.
        labels: per task, (n_t,) label indices, or for generation tasks the n_t reference output strings.
        support_texts / support_labels: per task, examples for ABML refinement of q(φ_t) (may be empty).
        names: task names (for logging).
        num_labels: labels per task (default 2 each).
    """

    embeddings: torch.Tensor
    texts: list[list[str]]
    labels: list[torch.Tensor | list[str]]
    support_texts: list[list[str]] = field(default_factory=list)
    support_labels: list[torch.Tensor | list[str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    num_labels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        t = self.embeddings.shape[0]
        if not self.num_labels:
            self.num_labels = [2] * t
        if len(self.texts) != t or len(self.labels) != t:
            raise ValueError(f"TaskBatch: {t} embeddings but {len(self.texts)} text lists and {len(self.labels)} labels")

    def __len__(self) -> int:
        return self.embeddings.shape[0]


class ABMLLModel(nn.Module):
    """The Pyro model p(θ) p(φ_t | θ) p(D_t | φ_t) with the base model's likelihood.

    Args:
        layout: the adapters' layout. floor: c per flat entry (D,) (see `weight_floor`).
        classifier: runs the base model with factors applied: a `FactorClassifier` or any `meta.likelihood`
            likelihood (a causal LM's); None where only the amortized posterior is used (no refinement).
        config: the model config. beta / gamma: the KL weights (set by the trainer).
        likelihood_scale: weight of each observed example (1: the plain ELBO).

    Usage::

        model = ABMLLModel(layout, floor, classifier, config)
        guide = ABMLLGuide(model)
        svi = SVI(model, guide, Adam({"lr": 3e-3}), TraceMeanField_ELBO())
        svi.step(batch)
    """

    def __init__(self, layout: LoraLayout, floor: torch.Tensor, classifier: FactorClassifier, config: ABMLLConfig,
                 beta: float = 1e-3, gamma: float = 1e-5, likelihood_scale: float = 1.0) -> None:
        super().__init__()
        if floor.shape != (layout.num_parameters,):
            raise ValueError(f"floor has shape {tuple(floor.shape)}, expected ({layout.num_parameters},)")
        self.layout, self.config = layout, config
        self.set_likelihood(classifier)
        self.beta, self.gamma, self.likelihood_scale = beta, gamma, likelihood_scale
        self.register_buffer("floor", floor.float().clone())
        # The hyperprior centres θ_ρ on the initial prior scale (in units of the module's std(W₀)).
        init_scale = floor * (config.prior_scale_init / config.scale_floor)
        self.register_buffer("rho_init", inverse_softplus(init_scale - floor))

    def set_likelihood(self, classifier: FactorClassifier | Likelihood | None) -> None:
        """Use `classifier` (a `FactorClassifier` or a `Likelihood`; None: none) for the likelihood."""
        self.likelihood = as_likelihood(classifier) if classifier is not None else None
        self.classifier = getattr(self.likelihood, "classifier", self.likelihood)  # the FactorClassifier, if any

    # ---- pieces shared with the guide ---------------------------------------------------------------
    def scale_from_rho(self, rho: torch.Tensor) -> torch.Tensor:
        """σ = softplus(ρ) + c."""
        return F.softplus(rho) + self.floor

    def logits(self, phi: torch.Tensor, texts: Sequence[str], num_labels: int = 2) -> torch.Tensor:
        """Base-model logits (n, K) for one task's flat factors φ (D,) (a classifier likelihood only)."""
        return self.likelihood.logits(texts, self.layout.unflatten(phi), self.layout.scaling, num_labels)

    def log_likelihood(self, phi: torch.Tensor, texts: Sequence[str], labels: torch.Tensor | Sequence[str],
                       num_labels: int = 2) -> torch.Tensor:
        """Σ_i log p(y_i | x_i, φ): a scalar, differentiable in φ (y: label indices, or reference outputs)."""
        if self.likelihood is None:
            raise ValueError("this ABMLL model has no likelihood; give it a classifier or likelihood first")
        return self.likelihood.log_prob(list(texts), labels, self.layout.unflatten(phi), self.layout.scaling,
                                        num_labels).sum()

    # ---- the Pyro model -----------------------------------------------------------------------------
    def forward(self, batch: TaskBatch) -> torch.Tensor:
        d = self.layout.num_parameters
        zeros = self.floor.new_zeros(d)
        with poutine.scale(scale=self.gamma):
            theta_loc = pyro.sample("theta_loc", dist.Normal(zeros, self.config.hyper_loc_scale).to_event(1))
            theta_rho = pyro.sample("theta_rho", dist.Normal(self.rho_init, self.config.hyper_rho_scale).to_event(1))
        prior_scale = self.scale_from_rho(theta_rho)  # (D,)
        with pyro.plate("tasks", len(batch)), poutine.scale(scale=self.beta):
            phi = pyro.sample("phi", dist.Normal(theta_loc, prior_scale).expand([len(batch), d]).to_event(1))
        for t in range(len(batch)):  # one forward pass of the base model per task: each task has its own φ_t
            if self.likelihood.kind != CLASSIFIER:
                ll = self.likelihood.log_prob(batch.texts[t], batch.labels[t], self.layout.unflatten(phi[t]),
                                              self.layout.scaling, batch.num_labels[t])  # (n_t,)
                with pyro.plate(f"data_{t}", len(batch.texts[t])), poutine.scale(scale=self.likelihood_scale):
                    pyro.factor(f"y_{t}", ll)
                continue
            logits = self.logits(phi[t], batch.texts[t], batch.num_labels[t])  # (n_t, K)
            with pyro.plate(f"data_{t}", len(batch.texts[t])), poutine.scale(scale=self.likelihood_scale):
                pyro.sample(f"y_{t}", dist.Categorical(logits=logits), obs=batch.labels[t].to(logits.device))
        return phi
