"""Typed, self-checking configs for ABMLL (amortized Bayesian meta-learning of LoRA adapters).

ABMLL's ELBO over a minibatch of tasks t with data D_t (ABML, Ravi & Beatson 2019, adapted to LoRA):

    L = Σ_t ( E_q(φ_t)[log p(D_t | φ_t)] − β · KL(q(φ_t) ‖ p(φ_t | θ)) ) − γ · KL(q(θ) ‖ p(θ))

β rescales the fidelity of the task parameters φ_t to the global θ, γ the regularisation of θ; both counter the
mismatch between a transformer's likelihood (tens of examples) and KL terms over ~10⁴–10⁵ LoRA entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loragen.bank.config import SectionedConfig, check, raise_problems


@dataclass
class ABMLLConfig:
    """The model: LoRA layout, prior and posterior families, the amortization network.

    Args:
        r: LoRA rank of every task adapter φ_t.
        lora_alpha: LoRA alpha (scaling = lora_alpha / r).
        target_modules: short names of the adapted linear layers ("query", "value", ...).
        layers: adapt only the blocks with these indices (the first number in a module path, as the oracle recipe's
            `layers`); None adapts every block. Taken from the bank's final adapters when they cover fewer blocks.
        scale_floor: c = scale_floor · std(W₀) of each module's pretrained weight: the floor under every prior and
            posterior scale σ = softplus(ρ) + c, so that no sampled adapter collapses to a point.
        prior_scale_init: initial σ of the prior p(φ | θ) in units of std(W₀) (sets the initial ρ of θ).
        posterior_scale_init: initial σ of the amortized posterior q(φ_t) in units of std(W₀).
        hyper_loc_scale: std of the hyperprior p(θ_loc) = N(0, hyper_loc_scale²) (in absolute units).
        hyper_rho_scale: std of the hyperprior on θ_ρ around its initial value.
        max_slots: label slots of the order-aware description embedding (`meta.condition`).
        embed_dim: size of the description embedding: (max_slots + 1) · 384 for the slot encoder over MiniLM.
        hidden_dim: width of the amortization MLP.
        code_dim: size of the task code the MLP produces; the posterior loc/scale are linear in it.
    """

    r: int = 4
    lora_alpha: float = 8.0
    target_modules: tuple[str, ...] = ("query", "key", "value")  # the suite's oracles (bank/train/oracle.py)
    layers: tuple[int, ...] | None = None
    scale_floor: float = 0.02
    prior_scale_init: float = 0.5
    posterior_scale_init: float = 0.05
    hyper_loc_scale: float = 1.0
    hyper_rho_scale: float = 1.0
    max_slots: int = 3
    embed_dim: int = 1536
    hidden_dim: int = 256
    code_dim: int = 64

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        self.layers = None if self.layers is None else tuple(sorted(int(i) for i in self.layers))
        p: list[str] = []
        check(p, isinstance(self.r, int) and self.r >= 1, f"r must be a positive integer, got {self.r!r}")
        check(p, self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        check(p, len(self.target_modules) > 0, "target_modules is empty; name at least one layer, e.g. ('query',)")
        check(p, self.layers is None or (len(self.layers) > 0 and min(self.layers) >= 0),
              f"layers must be None (every block) or non-negative block indices, got {self.layers!r}")
        for name in ("scale_floor", "prior_scale_init", "posterior_scale_init", "hyper_loc_scale", "hyper_rho_scale"):
            check(p, getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("embed_dim", "hidden_dim", "code_dim"):
            check(p, int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        raise_problems("ABMLLConfig", p)

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r


WARM_STARTS = ("regression", "pca")


@dataclass
class TrainConfig:
    """SVI over minibatches of tasks.

    Args:
        beta: KL weight of the task posteriors against the global prior (fidelity of φ_t to θ).
        gamma: KL weight of the global parameters against their hyperprior.
        lr: Adam learning rate of the scales (θ_ρ, the posterior's ρ network).
        mean_lr_scale: the means (θ̂_loc and the amortization network's encoder and loc head) learn at
            lr · mean_lr_scale: raw LoRA entries are ~0.01-0.05 and Adam moves every weight by about lr per step,
            so the means need smaller steps than the scales not to undo the warm start with noisy ELBO gradients.
        steps: SVI steps (each one minibatch of tasks).
        tasks_per_batch: tasks per SVI step.
        examples_per_task: labelled examples per task per step (a random subset of the task's training split).
        num_particles: posterior samples per task per step for the ELBO's Monte Carlo estimate.
        inner_steps: ABML refinement steps of q(φ_t) on the task's support examples during training (0: amortized
            only; > 0 uses the first-order approximation, no second derivatives through MiniLM).
        inner_lr: Adam learning rate of those refinement steps.
        warm_start_steps: steps of regressing the amortized posterior mean onto known task adapters (the bank's
            oracles) before SVI, when such adapters are given; 0 to skip.
        warm_start_lr: learning rate of the warm start.
        warm_start: how the warm start fits the amortized mean: "regression" (Adam on the squared error of the full
            adapters, every wording a row: each step costs a pass over rows x D entries) or "pca" (the adapters'
            top principal directions become the loc head in closed form; Adam then fits only the small encoder to
            each task's coordinates: seconds where "regression" takes many minutes for a large layout, such as
            SmolLM2's 153,600 entries).
        seed: seed for parameter init and task/example sampling.
        log_every: steps between progress-bar updates of the ELBO.
    """

    beta: float = 1e-3
    gamma: float = 1e-5
    lr: float = 3e-3
    mean_lr_scale: float = 0.1
    steps: int = 300
    tasks_per_batch: int = 4
    examples_per_task: int = 32
    num_particles: int = 1
    inner_steps: int = 0
    inner_lr: float = 1e-2
    warm_start_steps: int = 300
    warm_start_lr: float = 3e-3
    warm_start: str = "regression"
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        p: list[str] = []
        for name in ("beta", "gamma"):
            check(p, getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "inner_lr", "warm_start_lr", "mean_lr_scale"):
            check(p, getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("steps", "tasks_per_batch", "examples_per_task", "num_particles", "log_every"):
            check(p, int(getattr(self, name)) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(p, self.warm_start in WARM_STARTS, f"warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")
        for name in ("inner_steps", "warm_start_steps"):
            check(p, int(getattr(self, name)) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        raise_problems("TrainConfig", p)


REFINE_OPTIMIZERS = ("natural", "adam")
# The step size each refinement optimizer is meant for: natural steps are scaled by the posterior's own variance.
REFINE_LR = {"natural": 10.0, "adam": 1e-2}


@dataclass
class GenerateConfig:
    """Generation: how many adapters, how the task posterior is refined on user examples.

    Args:
        n_samples: default number of sampled adapters S next to the posterior mean.
        refine_steps: ABML refinement steps on the task ELBO when labelled examples are given.
        refine_optimizer: "natural" (steps in the posterior's metric, each coordinate at most `refine_max_step`
            standard deviations per step; stable to small changes of the checkpoint, see `meta.guide`) or "adam"
            (what checkpoints saved before the option used: their config.json has no `refine_optimizer`).
        refine_lr: step size (default: `REFINE_LR[refine_optimizer]`).
        refine_max_step: natural steps: the most posterior standard deviations a coordinate moves per step.
        beta: KL weight of the refinement's ELBO (as in training).
    """

    n_samples: int = 8
    refine_steps: int = 20
    refine_optimizer: str = "natural"
    refine_lr: float | None = None
    refine_max_step: float = 0.25
    beta: float = 1e-3

    def __post_init__(self) -> None:
        p: list[str] = []
        check(p, self.refine_optimizer in REFINE_OPTIMIZERS,
              f"refine_optimizer must be one of {REFINE_OPTIMIZERS}, got {self.refine_optimizer!r}")
        if self.refine_lr is None and self.refine_optimizer in REFINE_LR:
            self.refine_lr = REFINE_LR[self.refine_optimizer]
        check(p, self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}")
        check(p, self.refine_steps >= 0, f"refine_steps must be >= 0, got {self.refine_steps}")
        check(p, self.refine_lr is None or self.refine_lr > 0, f"refine_lr must be > 0, got {self.refine_lr}")
        check(p, self.refine_max_step > 0, f"refine_max_step must be > 0, got {self.refine_max_step}")
        check(p, self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        raise_problems("GenerateConfig", p)


@dataclass
class MetaConfig(SectionedConfig):
    """Everything a trained ABMLL checkpoint needs to be rebuilt: saved as JSON next to the safetensors."""

    model: ABMLLConfig = field(default_factory=ABMLLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)

