"""`ABMLLGenerator`: description (+ optional examples) -> posterior-mean adapter and S sampled adapters.

Examples refine the posterior through the likelihood the checkpoint was trained with (`meta.likelihood`), rebuilt
from its record on first use; a request the likelihood cannot read (labelled examples or label names for a
checkpoint trained on generation tasks) is refused rather than ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.errors import ConfigError, UnknownBaseModelError
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.meta.config import GenerateConfig
from loragen.meta.guide import ABMLLGuide
from loragen.meta.likelihood import CAUSAL_LM, LikelihoodSpec, as_likelihood
from loragen.meta.model import ABMLLModel, FactorClassifier

Encode = Callable[[list[str]], "np.ndarray | torch.Tensor"]


@dataclass
class Posterior:
    """A task posterior q(φ) and adapters drawn from it.

    Args:
        mean: the posterior-mean adapter. samples: S adapters drawn from q(φ).
        loc, scale: the posterior's parameters (D,) each. refined: whether examples refined it.
    """

    mean: LoraAdapter
    samples: list[LoraAdapter]
    loc: torch.Tensor
    scale: torch.Tensor
    refined: bool


def default_encoder(max_slots: int = 3) -> Encode:
    """The order-aware slot encoder over the bank's description encoder (MiniLM, L2-normalised): the process's
    shared one, so a service's bank, CVAE and ABMLL embed a description once (`bank.embed.default_encoder`)."""
    from loragen.bank.embed import default_encoder as shared_encoder
    from loragen.meta.condition import SlotDescriptionEncoder

    return SlotDescriptionEncoder(shared_encoder().encode, max_slots)


class ABMLLGenerator:
    """ABMLL as an `AdapterGenerator`.

    Args:
        model, guide: a trained ABMLL (see `meta.train`).
        encode: texts -> (n, embed_dim) embeddings, the same encoder as in training (default: the bank's).
        config: generation settings (refinement steps, default S).

    Usage::

        gen = ABMLLGenerator.from_checkpoint("runs/abmll", classifier=get_provider("minilm-suite").classifier())
        mean, = gen.generate(GenerationRequest("label 0 if Polish, label 1 if Czech"))
        post = gen.posterior(GenerationRequest("...", n_samples=8, seed=0))   # post.mean, post.samples
    """

    name = "abmll"

    def __init__(self, model: ABMLLModel, guide: ABMLLGuide, encode: Encode | None = None,
                 config: GenerateConfig | None = None, likelihood: LikelihoodSpec | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.model, self.guide = model, guide
        self._encode = encode
        self.config = config or GenerateConfig()
        self.likelihood = likelihood
        self._device = device
        self._last_refined: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | None = None, classifier: FactorClassifier | None = None,
                        encode: Encode | None = None, device: str | torch.device = "cpu") -> ABMLLGenerator:
        """Load from a checkpoint directory (default: `default_checkpoint_dir()`).

        The likelihood (needed only to refine with examples) is the one the checkpoint records: `classifier` is
        used when it is that one (same kind and base model), else it is rebuilt from the record on first use.

        Raises:
            CheckpointError: a missing or invalid checkpoint.
        """
        from loragen.meta.checkpoint import default_checkpoint_dir, likelihood_spec, load_checkpoint

        path = Path(path) if path is not None else default_checkpoint_dir()
        model, guide, config, meta = load_checkpoint(path, None, device)
        spec = likelihood_spec(meta)
        if classifier is not None and spec.matches(as_likelihood(classifier)):
            model.set_likelihood(classifier)
        return cls(model, guide, encode, config.generate, likelihood=spec, device=device)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Description embeddings (n, embed_dim) as float tensors on the guide's device."""
        if self._encode is None:
            self._encode = default_encoder(self.model.config.max_slots)
        emb = self._encode(list(texts))
        emb = torch.as_tensor(np.asarray(emb) if not isinstance(emb, torch.Tensor) else emb)
        return emb.float().to(self.guide.theta_loc.device)

    def _check_base_model(self, request: GenerationRequest) -> None:
        have = self.model.layout.base_model
        if request.base_model == have:
            return
        want = canonical_base_model_id(request.base_model)
        if want != have:
            raise UnknownBaseModelError(
                f"this ABMLL checkpoint generates adapters for {self.model.layout.base_model!r}, not {want!r}; "
                "train one on a bank of that base model's tasks: `loragen train meta --bank BANK` (with "
                "--base-model to pick it when the bank's adapters are for several)"
            )

    def _check_channels(self, request: GenerationRequest) -> None:
        """Refuse what the checkpoint's likelihood cannot read, instead of silently ignoring it."""
        causal = self.likelihood is not None and self.likelihood.kind == CAUSAL_LM
        if causal and request.examples and not request.generation_examples:
            raise ConfigError("this ABMLL checkpoint was trained on generation tasks (a causal LM's token "
                              "log-likelihood of (input, output) pairs), so labelled (text, label) examples do not "
                              "apply: give (input, output) pairs ({\"input\": ..., \"output\": ...} lines), or drop "
                              "--examples (examples=)")
        if not causal and request.generation_examples:
            raise ConfigError("this ABMLL checkpoint scores classification tasks, so (input, output) examples do not "
                              "apply: give (text, label index) pairs ({\"text\": ..., \"label\": ...} lines), or "
                              "use a checkpoint trained on generation tasks (`loragen train meta --bank BANK`)")
        if causal and request.labels:
            raise ConfigError("this ABMLL checkpoint was trained on generation tasks, which have no label names: "
                              "drop --labels (labels=) and describe the output in the description")

    def _ensure_likelihood(self) -> bool:
        """Build the recorded likelihood if the model has none yet; False when there is no record to build from."""
        if self.model.likelihood is None and self.likelihood is not None:
            self.model.set_likelihood(self.likelihood.build(self._device))
        return self.model.likelihood is not None

    @torch.no_grad()
    def _amortized(self, description: str) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.guide.posterior(self.embed([description]))
        return loc[0], scale[0]

    def posterior(self, request: GenerationRequest, n_samples: int | None = None) -> Posterior:
        """The task posterior for a request: amortized from the description, refined when examples are given.

        Args:
            request: the request (its seed fixes the samples; its examples trigger refinement).
            n_samples: sampled adapters S (default: request.n_samples, or the config's when that is 1).
        """
        self._check_base_model(request)
        self._check_channels(request)
        loc, scale = self._amortized(request.description)
        refined = bool(request.examples) and self.config.refine_steps > 0 and self._ensure_likelihood()
        if refined:
            loc, scale = self._refined(request, loc, scale)
        s = n_samples or (request.n_samples if request.n_samples > 1 else self.config.n_samples)
        g = torch.Generator(device=loc.device).manual_seed(0 if request.seed is None else int(request.seed))
        eps = torch.randn((s, loc.numel()), generator=g, device=loc.device)  # (S, D)
        layout, meta = self.model.layout, {"method": self.name, "description": request.description}
        mean = layout.to_adapter(loc, **meta, sample="mean", refined=refined)
        samples = [layout.to_adapter(loc + scale * e, **meta, sample=i, refined=refined) for i, e in enumerate(eps)]
        return Posterior(mean, samples, loc.detach(), scale.detach(), refined)

    def _refined(self, request: GenerationRequest, loc: torch.Tensor,
                 scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(φ) refined on the request's examples. The last refinement is remembered, so the same request asked
        again (its point estimate, then its samples: the harness, the trust score) runs the base model once."""
        cfg = self.config
        key = (request.description, request.examples, request.seed, request.num_labels, cfg.refine_steps,
               cfg.refine_optimizer, cfg.refine_lr, cfg.refine_max_step, cfg.beta)
        last = self._last_refined
        if last is not None and last[0] == key:
            return last[1]
        texts = [t for t, _ in request.examples]
        labels = ([y for _, y in request.examples] if request.generation_examples  # reference outputs
                  else torch.tensor([y for _, y in request.examples]))
        with torch.enable_grad():
            refined = self.guide.refine(loc, scale, texts, labels, cfg.refine_steps, cfg.refine_lr, cfg.beta,
                                        seed=request.seed or 0, num_labels=request.num_labels,
                                        optimizer=cfg.refine_optimizer, max_step=cfg.refine_max_step)
        self._last_refined = (key, refined)
        return refined

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        """The posterior mean when `request.n_samples == 1`, else `request.n_samples` posterior samples."""
        post = self.posterior(request, n_samples=max(request.n_samples, 1))
        return [post.mean] if request.n_samples == 1 else post.samples
