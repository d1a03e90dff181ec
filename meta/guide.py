"""ABMLL's guide: point estimates of θ and the amortized task posterior q(φ_t | description), refined on examples.

q(θ) is a point mass (δ at θ̂; with γ the ELBO term becomes γ·log p(θ̂), MAP-style as in ABML's global update).
q(φ_t) = N(loc_t, scale_t²) with

    h_t     = MLP(e_t)                                     e_t: the description embedding
    loc_t   = θ̂_loc + σ₀ ⊙ U h_t                          the global mean is the starting point of every task
    scale_t = softplus(ρ_q + V h_t) + c

When labelled examples are given, q(φ_t) is refined ABML-style: a few steps on the task's ELBO
E_q[log p(D_t | φ)] − β·KL(q ‖ p(φ | θ̂)), starting from the amortized guess (first-order during training).
Generation takes natural-gradient steps in q's own metric (the mean moves by lr·scale²·∇, log-scale by
lr·scale·∇/2), each coordinate at most `max_step` posterior standard deviations per step: the step is proportional to the gradient,
so coordinates the examples say little about stay put. Adam's first steps move every coordinate by ±lr whatever
its gradient, so a 1e-3 change of the starting point (an fp16 checkpoint) flipped the sign of tiny gradients and
moved the refined adapter by 1-3% of its norm; the natural step keeps such a change at its own size.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn
from torch.distributions import kl_divergence

from loragen.meta.config import REFINE_OPTIMIZERS, GenerateConfig
from loragen.meta.model import ABMLLModel, TaskBatch, inverse_softplus


class ABMLLGuide(nn.Module):
    """q(θ) q(φ_t | e_t): same signature and sample sites ("theta_loc", "theta_rho", "phi") as `ABMLLModel`.

    Args:
        model: the model (shares the layout, the floor c and the likelihood used by refinement).
        seed: seed of the initialisation (A entries of θ̂_loc Kaiming-uniform, B entries zero, as LoRA does).
        inner_steps / inner_lr: ABML refinement during training (0: amortized only).
    """

    def __init__(self, model: ABMLLModel, seed: int = 0, inner_steps: int = 0, inner_lr: float = 1e-2) -> None:
        super().__init__()
        cfg = model.config
        self.model = [model]  # a list keeps the model (and its classifier) out of this module's state_dict
        self.inner_steps, self.inner_lr = inner_steps, inner_lr
        g = torch.Generator().manual_seed(seed)
        self.theta_loc = nn.Parameter(_lora_init(model, g))
        self.theta_rho = nn.Parameter(model.rho_init.clone())
        self.encoder = nn.Sequential(
            nn.Linear(cfg.embed_dim, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.code_dim), nn.Tanh()
        )
        d = model.layout.num_parameters
        self.loc_head = nn.Linear(cfg.code_dim, d, bias=False)
        self.rho_head = nn.Linear(cfg.code_dim, d, bias=False)
        with torch.no_grad():
            for lin in (self.loc_head, self.rho_head):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 1e-4)
            floor = model.floor
            q_scale = floor * (cfg.posterior_scale_init / cfg.scale_floor)
        self.rho_q = nn.Parameter(inverse_softplus(q_scale - floor))
        # σ₀: the initial prior scale per entry. U h is measured in these units, so one optimiser step moves every
        # module's factors by a similar fraction of its own scale (raw LoRA entries are ~0.01-0.05).
        self.register_buffer("unit", floor * (cfg.prior_scale_init / cfg.scale_floor))
        # Standardisation of the description embeddings, fitted on the training wordings (`fit_standardisation`):
        # MiniLM embeddings share a large common component that would otherwise swamp the task-specific part.
        self.register_buffer("emb_mean", torch.zeros(cfg.embed_dim))
        self.register_buffer("emb_std", torch.ones(cfg.embed_dim))

    def fit_standardisation(self, embeddings: torch.Tensor) -> None:
        """Set the per-dimension mean and std of the description embeddings (N, embed_dim)."""
        with torch.no_grad():
            self.emb_mean.copy_(embeddings.mean(0))
            self.emb_std.copy_(embeddings.std(0).clamp_min(1e-3) if embeddings.shape[0] > 1 else 1.0)

    @property
    def abmll(self) -> ABMLLModel:
        return self.model[0]

    # ---- the amortized posterior --------------------------------------------------------------------
    def posterior(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(φ_t), each (T, D), from description embeddings (T, embed_dim)."""
        x = embeddings.to(self.theta_loc.device, self.theta_loc.dtype)
        h = self.encoder((x - self.emb_mean) / self.emb_std)  # (T, code_dim)
        loc = self.theta_loc + self.unit * self.loc_head(h)
        scale = F.softplus(self.rho_q + self.rho_head(h)) + self.abmll.floor
        return loc, scale

    def prior(self) -> dist.Normal:
        """p(φ | θ̂) with the current point estimate of θ, batch shape (D,)."""
        return dist.Normal(self.theta_loc, self.abmll.scale_from_rho(self.theta_rho))

    def refine(self, loc: torch.Tensor, scale: torch.Tensor, texts: Sequence[str],
               labels: torch.Tensor | Sequence[str],
               steps: int, lr: float, beta: float | None = None, seed: int = 0,
               num_labels: int = 2, optimizer: str = "natural",
               max_step: float = GenerateConfig.refine_max_step
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """ABML refinement of one task's q(φ) on labelled examples, starting from the amortized guess.

        Args:
            loc, scale: the starting posterior, (D,) each. texts, labels: the task's examples (label indices, or
                reference outputs for a causal-LM likelihood).
            steps: steps on the negative task ELBO. lr: their step size.
            beta: KL weight (default: the model's). seed: seed of the reparameterisation noise.
            num_labels: how many labels the task has.
            optimizer: "natural" (steps in q's metric, see the module docstring) or "adam".
            max_step: natural steps: the most posterior standard deviations a coordinate moves per step.

        Returns:
            The refined (loc, scale), detached, (D,) each.
        """
        beta = self.abmll.beta if beta is None else beta
        floor = self.abmll.floor
        prior = dist.Normal(self.theta_loc.detach(), self.abmll.scale_from_rho(self.theta_rho).detach())
        g = torch.Generator(device=loc.device).manual_seed(seed)
        if isinstance(labels, torch.Tensor):
            labels = labels.to(loc.device)

        def loss(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # the negative task ELBO, one sample
            phi = m + s * torch.randn(m.shape, generator=g, device=m.device)
            nll = -self.abmll.log_likelihood(phi, texts, labels, num_labels) * self.abmll.likelihood_scale
            return nll + beta * kl_divergence(dist.Normal(m, s), prior).sum()

        if optimizer == "natural":
            m, s = loc.detach().clone(), scale.detach().clone()
            for _ in range(steps):
                m.requires_grad_(True)
                s.requires_grad_(True)
                gm, gs = torch.autograd.grad(loss(m, s), [m, s])
                with torch.no_grad():
                    m = m - s * torch.clamp(lr * s * gm, -max_step, max_step)
                    s = (s * torch.exp(torch.clamp(-lr * s * gs / 2, -max_step, max_step))).clamp_min(floor)
            return m.detach(), s.detach()
        if optimizer not in REFINE_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {REFINE_OPTIMIZERS}, got {optimizer!r}")
        m = loc.detach().clone().requires_grad_(True)
        rho = inverse_softplus((scale.detach() - floor).clamp_min(1e-8)).requires_grad_(True)
        opt = torch.optim.Adam([m, rho], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss(m, F.softplus(rho) + floor).backward()
            opt.step()
        return m.detach(), (F.softplus(rho) + floor).detach()

    def _refine_batch(self, batch: TaskBatch, loc: torch.Tensor, scale: torch.Tensor):
        """First-order ABML during training: move each task's q by its refinement, gradients pass straight through."""
        locs, scales = [], []
        for t in range(len(batch)):
            if t >= len(batch.support_texts) or not batch.support_texts[t]:
                locs.append(loc[t])
                scales.append(scale[t])
                continue
            m, s = self.refine(loc[t], scale[t], batch.support_texts[t], batch.support_labels[t],
                               self.inner_steps, self.inner_lr, num_labels=batch.num_labels[t], optimizer="adam")
            locs.append(loc[t] + (m - loc[t]).detach())
            scales.append(scale[t] + (s - scale[t]).detach())
        return torch.stack(locs), torch.stack(scales)

    # ---- the Pyro guide -----------------------------------------------------------------------------
    def forward(self, batch: TaskBatch) -> torch.Tensor:
        pyro.module("abmll_guide", self)
        model = self.abmll
        with poutine.scale(scale=model.gamma):
            pyro.sample("theta_loc", dist.Delta(self.theta_loc).to_event(1))
            pyro.sample("theta_rho", dist.Delta(self.theta_rho).to_event(1))
        loc, scale = self.posterior(batch.embeddings)  # (T, D) each
        if self.inner_steps > 0 and batch.support_texts:
            loc, scale = self._refine_batch(batch, loc, scale)
        with pyro.plate("tasks", len(batch)), poutine.scale(scale=model.beta):
            return pyro.sample("phi", dist.Normal(loc, scale).to_event(1))


def _lora_init(model: ABMLLModel, g: torch.Generator) -> torch.Tensor:
    """θ̂_loc at LoRA's init: A Kaiming-uniform (bound 1/sqrt(in)), B zero, so the initial ΔW is 0. (D,)"""
    parts = []
    layout = model.layout
    for o, n in layout.shapes:
        bound = 1.0 / n**0.5
        parts.append((torch.rand(layout.r * n, generator=g) * 2 - 1) * bound)
        parts.append(torch.zeros(o * layout.r))
    return torch.cat(parts)
