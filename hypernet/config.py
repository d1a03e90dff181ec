"""Typed, self-checking configs for the ICM-LoRA hypernetwork: model dims, condition options, KL schedule, training.

Every config is a plain dataclass of JSON-serialisable values, so a checkpoint's `config.json` rebuilds it exactly
(`HypernetConfig.from_dict`). Errors name the field and the value that was wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from loragen.bank.config import SectionedConfig, check, raise_problems

log = logging.getLogger(__name__)


@dataclass
class ConditionConfig:
    """How the condition (description, optional label names and examples) becomes per-slot vectors.

    Attributes:
        max_slots: most classes a task may have; one condition slot per class.
        text_dim: width of the sentence embeddings (384 for MiniLM).
        whiten: whiten each condition channel with statistics fitted on the training set and stored in the
            checkpoint (without it, end-to-end training stalled at one class: issue 5, pitfall 2).
        whiten_eps: shrinkage added to the covariance eigenvalues, as a fraction of the mean eigenvalue.
        p_labels: probability that a training item carries label names.
        p_examples: probability that a training item carries labelled examples.
        n_examples: how many labelled examples a training item carries when it has them.
        example_pool: examples per task embedded once before training (items draw `n_examples` from these).
        p_drop_global: probability that a training item's whole-description token is zeroed, so the model
            learns to read the per-label slots rather than memorise wordings (held-out paraphrases). Only items
            whose wording has label clauses are dropped: for free text the description token is the condition.
        global_text: "always" embeds the whole description for the global token; "fallback" only when the parser
            did not find a clause for every class (otherwise the token is zero). The whole description is the one
            long text the encoder must run on per request (the short per-label texts repeat and are cached), so
            "fallback" is the low-latency choice.
    """

    max_slots: int = 8
    text_dim: int = 384
    whiten: bool = True
    whiten_eps: float = 0.05
    p_labels: float = 0.3
    p_examples: float = 0.3
    n_examples: int = 8
    example_pool: int = 32
    p_drop_global: float = 0.5
    global_text: str = "always"

    def __post_init__(self) -> None:
        p: list[str] = []
        check(p, 2 <= self.max_slots <= 64, f"max_slots must be in [2, 64], got {self.max_slots}")
        check(p, self.text_dim > 0, f"text_dim must be positive, got {self.text_dim}")
        check(p, self.whiten_eps > 0, f"whiten_eps must be positive, got {self.whiten_eps}")
        for name in ("p_labels", "p_examples", "p_drop_global"):
            value = getattr(self, name)
            check(p, 0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")
        check(p, self.global_text in ("always", "fallback"),
               f"global_text must be 'always' or 'fallback', got {self.global_text!r}")
        check(p, self.n_examples >= 1, f"n_examples must be >= 1, got {self.n_examples}")
        check(p, self.example_pool >= self.n_examples,
               f"example_pool ({self.example_pool}) must be >= n_examples ({self.n_examples})")
        raise_problems("ConditionConfig", p)


@dataclass
class ModelConfig:
    """Sizes of the CVAE.

    Attributes:
        d_model: width of module and condition tokens.
        latent_dim: size of z.
        n_heads: attention heads (d_model must divide by it).
        n_layers: decoder layers (module tokens self-attend and cross-attend to the condition tokens).
        enc_layers: encoder layers of q(z | W, c).
        dropout: dropout inside the transformer layers.
        representation: the weight space generated in: "subspace" (ΔW·V on a per-module basis fitted on the
            training adapters, linear in ΔW) or "canonical" (SVD canonical factors); see hypernet.space.
        subspace_rank: R, the subspace width; generated adapters have rank R.
        decoder: "additive" (the adapter is a sum of one decoding per class slot, each seeing its slot and the
            global token: held-out combinations compose from seen classes) or "joint" (module tokens attend
            to all slots at once).
        readout: add the closed-form additive ridge readout (hypernet.readout) to the decoder: it gives the mean
            adapter, fitted exactly on the bank; the transformer then models what it leaves.
        readout_rank: K, width of the readout's output basis (capped by the number of training adapters).
        readout_ridge: ridge strength of the readout, relative to the mean feature energy.
        readout_draws: labelled-example subsets drawn per training wording when fitting the examples patterns.
    """

    d_model: int = 128
    latent_dim: int = 32
    n_heads: int = 4
    n_layers: int = 2
    enc_layers: int = 1
    dropout: float = 0.0
    representation: str = "subspace"
    subspace_rank: int = 16
    decoder: str = "additive"
    readout: bool = True
    readout_rank: int = 256
    readout_ridge: float = 0.1
    readout_draws: int = 2

    def __post_init__(self) -> None:
        p: list[str] = []
        check(p, self.representation in ("subspace", "canonical"),
               f"representation must be 'subspace' or 'canonical', got {self.representation!r}")
        check(p, self.decoder in ("additive", "joint"), f"decoder must be 'additive' or 'joint', got {self.decoder!r}")
        check(p, self.readout_rank >= 1, f"readout_rank must be >= 1, got {self.readout_rank}")
        check(p, self.readout_ridge > 0, f"readout_ridge must be > 0, got {self.readout_ridge}")
        check(p, self.readout_draws >= 1, f"readout_draws must be >= 1, got {self.readout_draws}")
        check(p, self.subspace_rank >= 1, f"subspace_rank must be >= 1, got {self.subspace_rank}")
        check(p, self.d_model > 0 and self.d_model % max(self.n_heads, 1) == 0,
               f"d_model ({self.d_model}) must be positive and divisible by n_heads ({self.n_heads})")
        check(p, self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        check(p, self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")
        check(p, self.enc_layers >= 1, f"enc_layers must be >= 1, got {self.enc_layers}")
        check(p, 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        raise_problems("ModelConfig", p)


@dataclass
class TrainConfig:
    """Optimisation and the KL schedule.

    Attributes:
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: items per step.
        kl_weight: final weight β of the KL term.
        kl_anneal_steps: β rises linearly from 0 to `kl_weight` over this many steps (0: constant).
        free_bits: KL per latent dimension below this costs nothing (keeps z from collapsing early).
        mean_weight: weight λ of the reconstruction loss of the decoding at the prior mean z = 0 (the point
            estimate generation returns); 0 turns it off.
        checkpoint_weight: loss weight of trajectory checkpoints relative to final adapters (augmentation).
        use_checkpoints: train on the bank's trajectory checkpoints too.
        use_paraphrases: train on the in-bank paraphrases too (never on held-out paraphrases).
        seed: seed for data order, condition dropout and init.
        val_fraction: fraction of training tasks kept for validation loss (0: none).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    kl_weight: float = 1e-3
    kl_anneal_steps: int = 500
    free_bits: float = 0.0
    mean_weight: float = 1.0
    checkpoint_weight: float = 0.5
    use_checkpoints: bool = True
    use_paraphrases: bool = True
    seed: int = 0
    val_fraction: float = 0.0

    def __post_init__(self) -> None:
        p: list[str] = []
        check(p, self.lr > 0, f"lr must be positive, got {self.lr}")
        check(p, self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(p, self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(p, self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
        check(p, self.kl_anneal_steps >= 0, f"kl_anneal_steps must be >= 0, got {self.kl_anneal_steps}")
        check(p, self.free_bits >= 0, f"free_bits must be >= 0, got {self.free_bits}")
        check(p, self.mean_weight >= 0, f"mean_weight must be >= 0, got {self.mean_weight}")
        check(p, self.checkpoint_weight >= 0, f"checkpoint_weight must be >= 0, got {self.checkpoint_weight}")
        check(p, 0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        raise_problems("TrainConfig", p)

    def beta(self, step: int) -> float:
        """The KL weight at optimisation step `step` (linear warm-up)."""
        if self.kl_anneal_steps == 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, step / self.kl_anneal_steps)


@dataclass
class HypernetConfig(SectionedConfig):
    """Everything that defines a hypernetwork run: the parts above."""

    model: ModelConfig = field(default_factory=ModelConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

