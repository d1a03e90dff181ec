"""Run adapters of one base model on texts: what the trust score measures (class probabilities or a causal LM's
token statistics, `Probe`) and how many labelled examples an adapter gets right (`example_judge`, which retrieval
picks by). Kept apart from `api.trust` so that the generator registry can use it without importing the trust score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from loragen.api.uncertainty import _entropy, build_scorer, causal_lm_scores
from loragen.bank.lora import LoraAdapter


class Probe:
    """Runs adapters of one base model on texts: class probabilities (encoder) or token statistics (causal LM)."""

    def __init__(self, classifier: Any = None, causal: tuple[Any, Any] | None = None) -> None:
        self.classifier, self.causal = classifier, causal

    @classmethod
    def from_loaded(cls, loaded: Any) -> Probe:
        """From an `api.base_models` loaded model."""
        return cls(causal=(loaded.model, loaded.tokenizer)) if loaded.causal else cls(classifier=loaded.classifier)

    @torch.no_grad()
    def stats(self, adapters: Sequence[LoraAdapter], texts: Sequence[str], num_labels: int) -> dict[str, Any]:
        """entropy and max_prob (mean over texts), mi (None for one adapter), preds of the first adapter and its
        label balance (`balance_own` in `api.trust`; encoder only, else None)."""
        if self.causal is not None:
            s = causal_lm_scores(*self.causal, adapters, texts, max_new_tokens=16)
            return {"entropy": s.get("predictive_entropy"), "max_prob": s.get("confidence"),
                    "mi": s.get("mutual_information"), "preds": None, "balance": None}
        from loragen.meta.score import predictive_stats

        # Through the classifier's shared cache: the uncertainty score runs the same adapters on the same texts.
        probs = build_scorer(self.classifier, None).class_probs(adapters, list(texts), num_labels)  # (S, n, K)
        st = predictive_stats(probs)
        return {"entropy": float(st["predictive_entropy"].mean()), "max_prob": float(st["max_prob"].mean()),
                "mi": float(st["mutual_information"].mean()) if len(adapters) > 1 else None,
                "preds": probs[0].argmax(-1).tolist(), "balance": label_balance(probs[0])}

    def correct(self, adapter: LoraAdapter, examples: Sequence[tuple[str, int]] | Sequence[tuple[str, str]],
                num_labels: int) -> int | None:
        """How many examples the adapter gets right: (text, label) pairs on an encoder, (input, output) pairs on a
        causal LM by exact match of its greedy completion (`bank.causal_lm.exact_match`, as `trust fit` measures).
        None when the examples do not fit the model."""
        if not examples:
            return None
        generation = isinstance(examples[0][1], str)
        if self.causal is not None:
            return _exact_matches(*self.causal, adapter, examples) if generation else None
        if generation:
            return None
        preds = self.classifier.logits([t for t, _ in examples], adapter, num_labels).argmax(-1).tolist()
        return sum(int(p == y) for p, (_, y) in zip(preds, examples))


def _exact_matches(model: Any, tokenizer: Any, adapter: LoraAdapter, examples: Sequence[tuple[str, str]]) -> int:
    from loragen.bank.causal_lm import complete_like, exact_match
    from loragen.bank.lora.functional import lora_applied

    pairs = [(str(x), str(y)) for x, y in examples]
    device = next(model.parameters()).device
    with lora_applied(model, adapter.to(device) if adapter.device != device else adapter):
        preds = complete_like(model, tokenizer, pairs)
    return round(exact_match(preds, [y for _, y in pairs]) * len(pairs))


def example_judge(models: Any = None, classifier: Any = None, causal: tuple[Any, Any] | None = None
                  ) -> Callable[[LoraAdapter, Sequence[tuple], int], int | None]:
    """Retrieval's judge (`bank.retrieval.RetrievalGenerator`): how many examples an adapter gets right (labels on
    an encoder; exact match of the greedy completion on a causal LM), on `classifier` or the causal LM `causal`
    ((model, tokenizer)), else on the adapter's own base model from `models` (an `api.base_models.BaseModels`,
    under that model's lock)."""
    def judge(adapter: LoraAdapter, examples: Sequence[tuple], num_labels: int) -> int | None:
        if classifier is not None or causal is not None:
            return Probe(classifier=classifier, causal=causal).correct(adapter, examples, num_labels)
        loaded = models.get(adapter.base_model)
        with loaded.lock:
            return Probe.from_loaded(loaded).correct(adapter, examples, num_labels)

    return judge


def label_balance(probs: torch.Tensor) -> float:
    """Entropy of the mean of (n, K) class probabilities over log K, in [0, 1]: 0 when one label takes all."""
    return float(_entropy(probs.double().mean(0)) / math.log(probs.shape[-1]))
