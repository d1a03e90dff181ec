"""ABMLL's likelihood p(D_t | φ_t), pluggable: the base model run with a task's sampled LoRA factors applied.

Two kinds, chosen from the base model and the tasks (`choose_kind`):

    "classifier"  a classification task on an encoder: log p(y | x, φ) of a `FactorClassifier` (the built-in suite's
                  classifier, or `bank.train.classifier.PrototypeClassifier` over the user's own encoder)
    "causal_lm"   a generation task on a causal LM: the token log-likelihood of the reference output given the
                  prompt (`bank.causal_lm`), per example the mean over its output tokens (and end of sequence)

A `LikelihoodSpec` (kind, base model, the task provider whose classifier it is) is stored in the checkpoint, so a
generator rebuilds the same likelihood to refine a posterior on examples.

Usage::

    spec = LikelihoodSpec(CAUSAL_LM, "/models/my-llama")
    lik = spec.build()
    lik.log_prob(["2024-03-05"], ["March 5, 2024"], factors, scaling=2.0)   # (1,), differentiable in the factors
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from loragen.bank.errors import ConfigError

CLASSIFIER = "classifier"
CAUSAL_LM = "causal_lm"
KINDS = (CLASSIFIER, CAUSAL_LM)

Factors = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


@runtime_checkable
class Likelihood(Protocol):
    """Per-example log-likelihoods of a task's data with LoRA factors applied to a frozen base model.

    Attributes:
        kind: "classifier" or "causal_lm".
        model: the frozen base model (the adapters' module paths refer to it).
        base_model_id: its canonical id.
    """

    kind: str
    model: nn.Module
    base_model_id: str

    def log_prob(self, texts: Sequence[str], targets: Any, factors: Factors, scaling: float,
                 num_labels: int = 2) -> torch.Tensor:
        """(n,) log-likelihoods, differentiable in the factors: label indices (a tensor) for a classifier, the
        reference output strings for a causal LM."""
        ...


class ClassifierLikelihood:
    """log p(y | x, φ) = log softmax of a `FactorClassifier`'s logits (`meta.model.FactorClassifier`)."""

    kind = CLASSIFIER

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.model = classifier.model
        self.base_model_id = str(getattr(classifier, "base_model_id", ""))

    def logits(self, texts: Sequence[str], factors: Factors, scaling: float, num_labels: int = 2) -> torch.Tensor:
        """(n, num_labels) logits."""
        return self.classifier.logits_from_factors(list(texts), factors, scaling, num_labels=num_labels)

    def log_prob(self, texts: Sequence[str], targets: Any, factors: Factors, scaling: float,
                 num_labels: int = 2) -> torch.Tensor:
        import pyro.distributions as dist

        logits = self.logits(texts, factors, scaling, num_labels)
        return dist.Categorical(logits=logits).log_prob(torch.as_tensor(targets).to(logits.device))


class CausalLMLikelihood:
    """The mean token log-likelihood of each reference output on a causal LM (prompt format of `bank.causal_lm`).

    Args:
        base_model: a packaged causal LM's name or a local transformers directory.
        device: where it runs. max_length: tokens per example (prompt + output + eos), longer ones are truncated.
    """

    kind = CAUSAL_LM

    def __init__(self, base_model: str | None, device: str | torch.device | None = "cpu",
                 max_length: int = 128) -> None:
        from loragen.bank.base_model import canonical_base_model_id, load_base_model, load_tokenizer
        from loragen.bank.causal_lm import pad_id
        from loragen.bank.device import resolve_device

        self.device = resolve_device(device)
        self.base_model_id = canonical_base_model_id(base_model)
        self.model = load_base_model(base_model, device=self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = load_tokenizer(base_model)
        self.max_length, self.pad = max_length, pad_id(self.tokenizer)
        self._encoded: dict[tuple[str, str], Any] = {}

    def _batch(self, texts: Sequence[str], outputs: Sequence[str]) -> dict[str, torch.Tensor]:
        from loragen.bank.causal_lm import collate, encode_example

        encoded = []
        for pair in zip(texts, outputs):
            if pair not in self._encoded:
                self._encoded[pair] = encode_example(self.tokenizer, pair[0], pair[1], max_length=self.max_length)
            encoded.append(self._encoded[pair])
        return {k: v.to(self.device) for k, v in collate(encoded, self.pad).items()}

    def log_prob(self, texts: Sequence[str], targets: Any, factors: Factors, scaling: float,
                 num_labels: int = 2) -> torch.Tensor:
        from loragen.bank.causal_lm import token_logprobs
        from loragen.bank.lora.functional import lora_applied

        outputs = [str(t) for t in targets]
        batch = self._batch(texts, outputs)
        with lora_applied(self.model, dict(factors), scaling):
            logp, mask = token_logprobs(self.model, batch)  # (n, T-1) each
        return logp.sum(1) / mask.sum(1).clamp_min(1)


def as_likelihood(obj: Any) -> Likelihood:
    """`obj` itself when it is a `Likelihood`, else a `FactorClassifier` wrapped in `ClassifierLikelihood`."""
    if hasattr(obj, "log_prob") and getattr(obj, "kind", None) in KINDS:
        return obj
    if hasattr(obj, "logits_from_factors"):
        return ClassifierLikelihood(obj)
    raise TypeError(f"{type(obj).__name__} is neither an ABMLL likelihood nor a classifier with logits_from_factors")


def choose_kind(base_model: str, task_kinds: Sequence[str]) -> str:
    """The likelihood for tasks of `task_kinds` ("classification"/"generation") on `base_model`.

    Raises:
        ConfigError: tasks of both kinds, classification tasks on a causal LM or generation tasks on an encoder.
    """
    from loragen.bank.base_model import is_causal_lm

    kinds = sorted(set(task_kinds))
    causal = is_causal_lm(base_model)
    if len(kinds) > 1:
        raise ConfigError("the bank mixes classification tasks (with labels) and generation tasks (without); ABMLL "
                          "trains one likelihood, so train it on a bank of one kind")
    if causal and kinds == ["classification"]:
        raise ConfigError(f"{base_model} is a causal LM, whose ABMLL likelihood scores (input, output) pairs of "
                          "generation tasks, but the bank's tasks are classification tasks: import them as generation "
                          "tasks whose outputs are the label names, or use an encoder base model")
    if not causal and kinds == ["generation"]:
        raise ConfigError(f"{base_model} is an encoder, whose ABMLL likelihood classifies, but the bank's tasks are "
                          "generation tasks (no labels): use a causal LM base model for them")
    return CAUSAL_LM if causal else CLASSIFIER


@dataclass(frozen=True)
class LikelihoodSpec:
    """What a checkpoint records to rebuild its likelihood.

    Attributes:
        kind: "classifier" or "causal_lm".
        base_model: the canonical base model id (hub id or absolute local path).
        provider: the task provider whose classifier scored the tasks (the built-in suite: "minilm-suite"); None
            for a user's tasks, scored by `PrototypeClassifier(base_model)` or the causal LM.
    """

    kind: str
    base_model: str
    provider: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LikelihoodSpec:
        if data.get("kind") not in KINDS:
            raise ConfigError(f"unknown ABMLL likelihood kind {data.get('kind')!r}; known: {list(KINDS)}")
        return cls(str(data["kind"]), str(data["base_model"]), data.get("provider"))

    def build(self, device: str | torch.device | None = "cpu") -> Likelihood:
        """A new likelihood (loads the base model: seconds)."""
        if self.kind == CAUSAL_LM:
            return CausalLMLikelihood(self.base_model, device=device)
        if self.provider is not None:
            from loragen.bank.tasks import get_provider

            return ClassifierLikelihood(get_provider(self.provider).classifier(device=str(device)))
        from loragen.bank.train.classifier import PrototypeClassifier

        return ClassifierLikelihood(PrototypeClassifier(self.base_model, device=device))

    def matches(self, likelihood: Likelihood) -> bool:
        """Whether `likelihood` is this spec's: same kind and base model (a likelihood that does not say its base
        model is taken at its word)."""
        return likelihood.kind == self.kind and likelihood.base_model_id in ("", self.base_model)
