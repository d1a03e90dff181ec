"""Uncertainty scores for adapters from any method (ABMLL samples, CVAE samples, one retrieved adapter).

For S adapters and n inputs, with p_s(y | x) each adapter's predictive distribution and p̄ = mean_s p_s:

    predictive entropy  H[p̄]                      total uncertainty
    expected entropy    mean_s H[p_s]              aleatoric part
    mutual information  H[p̄] − mean_s H[p_s]       epistemic part (disagreement between samples; 0 for S = 1)

plus out-of-distribution signals from the bank's indexes: the similarity of the description to the nearest bank
description and of each adapter's weights to the nearest bank adapter. A logistic calibrator fit on validation
predictions turns these into one confidence in [0, 1] = P(prediction correct).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.train.classifier import PrototypeClassifier
from loragen.meta.calibration import LogisticCalibrator
from loragen.meta.model import FactorClassifier

FEATURES = ("max_prob", "predictive_entropy", "mutual_information", "description_similarity", "weight_similarity")
_BANK_FEATURES = ("description_similarity", "weight_similarity")


@dataclass
class UncertaintyScore:
    """The uncertainty of a set of adapters for one description (averages over the inputs).

    Args:
        predictive_entropy / expected_entropy / mutual_information: in nats, mean over inputs.
        max_prob: mean over inputs of the largest averaged class probability (the raw, uncalibrated confidence).
        description_similarity: cosine similarity of the description to the nearest bank description (None: no bank).
        weight_similarity: mean over adapters of the similarity to the nearest bank adapter (None: no bank).
        nearest_task: the bank task whose description is closest.
        confidence: calibrated P(correct) in [0, 1] averaged over inputs (the raw max_prob when uncalibrated).
        calibrated: whether `confidence` comes from a fitted calibrator.
        per_input_confidence: calibrated confidence per input (n,). probs: averaged class probabilities (n, K).
    """

    predictive_entropy: float
    expected_entropy: float
    mutual_information: float
    max_prob: float
    description_similarity: float | None
    weight_similarity: float | None
    nearest_task: str | None
    confidence: float
    calibrated: bool
    n_adapters: int
    n_inputs: int
    per_input_confidence: list[float] = field(default_factory=list, repr=False)
    probs: list[list[float]] = field(default_factory=list, repr=False)

    def to_dict(self, per_input: bool = False) -> dict:
        d = asdict(self)
        if not per_input:
            d.pop("per_input_confidence")
            d.pop("probs")
        return d


def predictive_stats(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-input uncertainty from class probabilities of S adapters.

    Args:
        probs: (S, n, K) class probabilities.

    Returns:
        mean_probs (n, K), max_prob (n,), predictive_entropy (n,), expected_entropy (n,), mutual_information (n,).
    """
    if probs.ndim != 3:
        raise ValueError(f"probs must be (S, n, K), got {tuple(probs.shape)}")
    probs = probs.double()
    mean = probs.mean(0)  # (n, K)
    ent = -(mean * mean.clamp_min(1e-12).log()).sum(-1)  # (n,)
    exp_ent = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(0)  # (n,)
    return {"mean_probs": mean, "max_prob": mean.max(-1).values, "predictive_entropy": ent,
            "expected_entropy": exp_ent, "mutual_information": (ent - exp_ent).clamp_min(0.0)}


class ProbabilityCache:
    """Results of a classifier's forward passes, least recently used dropped first, safe to share between threads
    and between the scorers of one classifier (a service's uncertainty scorer and its trust probe run the same
    adapters on the same probe texts).

    Two kinds, each holding at most `size` entries: "probs", (adapter sha256, texts, num_labels) -> (n, K) class
    probabilities; "batches", texts -> the classifier's tokenised batch.
    """

    KINDS = ("probs", "batches")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self._entries: dict[str, OrderedDict[Any, Any]] = {kind: OrderedDict() for kind in self.KINDS}
        self._lock = threading.Lock()

    def get(self, kind: str, key: Any) -> Any:
        """The remembered value, or None."""
        with self._lock:
            entries = self._entries[kind]
            value = entries.get(key)
            if value is not None:
                entries.move_to_end(key)
            return value

    def put(self, kind: str, key: Any, value: Any) -> None:
        with self._lock:
            entries = self._entries[kind]
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > self.size:
                entries.popitem(last=False)

    def clear(self, kind: str | None = None) -> None:
        """Forget one kind of entry (None: both)."""
        with self._lock:
            for name in (kind,) if kind else self.KINDS:
                self._entries[name].clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries["probs"])


class Scorer:
    """Scores adapters from any generator.

    Args:
        classifier: runs the base model with an adapter (`logits_from_factors`).
        bank: an open `bank.store.Bank` for the out-of-distribution signals (None: those are left out).
        calibrator: a fitted `LogisticCalibrator` (None: the confidence is the raw mean max-probability).
        probe_texts: inputs used when `score` gets none (a fixed, seed-independent set).
        cache_size: how many (adapter, inputs) class-probability results to remember, least recently used dropped
            first (0: none, the default). A service scores the same adapter on the same probe texts again and again
            (retrieval returns bank adapters); a hit is the stored result of the identical forward pass, keyed by the
            adapter's checksum (`LoraAdapter.sha256`: tensors, rank, alpha), the inputs and the number of labels.
            With a cache the tokenised inputs are remembered too (for a classifier with `tokenize`).
        cache: a `ProbabilityCache` to use instead (shared with other scorers of the same classifier).

    Usage::

        clf = get_provider("minilm-suite").classifier()
        scorer = Scorer(clf, bank=Bank.open(), calibrator=LogisticCalibrator.load(path))
        s = scorer.score("label 0 if Polish, label 1 if Czech", post.samples, inputs=["Dzień dobry"])
        s.confidence, s.mutual_information
    """

    def __init__(self, classifier: FactorClassifier, bank=None, calibrator: LogisticCalibrator | None = None,
                 probe_texts: Sequence[str] | None = None, cache_size: int = 0,
                 cache: ProbabilityCache | None = None) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.classifier, self.bank, self.calibrator = classifier, bank, calibrator
        self.probe_texts = list(probe_texts or [])
        self.cache = cache if cache is not None else (ProbabilityCache(cache_size) if cache_size else None)
        self.cache_size = self.cache.size if self.cache is not None else 0
        if calibrator is not None and bank is None and set(calibrator.features) & set(_BANK_FEATURES):
            raise ValueError(f"the calibrator uses bank features {list(_BANK_FEATURES)}; pass bank=Bank.open(...)")

    @classmethod
    def from_files(cls, classifier: FactorClassifier, bank=None, calibrator_path: str | Path | None = None,
                   probe_texts: Sequence[str] | None = None, cache_size: int = 0,
                   cache: ProbabilityCache | None = None) -> Scorer:
        cal = LogisticCalibrator.load(calibrator_path) if calibrator_path else None
        return cls(classifier, bank, cal, probe_texts, cache_size, cache)

    # ---- the pieces ---------------------------------------------------------------------------------
    @torch.no_grad()
    def class_probs(self, adapters: Sequence[LoraAdapter], inputs: Sequence[str], num_labels: int = 2) -> torch.Tensor:
        """(S, n, K) class probabilities of each adapter on each input (remembered when `cache_size` > 0)."""
        texts = list(inputs)
        batch = self._tokenized(texts)
        out = []
        for adapter in adapters:
            key = (adapter.sha256(), tuple(texts), num_labels) if self.cache is not None else None
            probs = self.cache.get("probs", key) if key is not None else None
            if probs is None:
                factors = {m: (a, b) for m, a, b in adapter.items()}
                logits = self.classifier.logits_from_factors(batch, factors, adapter.scaling, num_labels=num_labels)
                probs = torch.softmax(logits.float(), -1)
                if key is not None:
                    self.cache.put("probs", key, probs)
            out.append(probs)
        return torch.stack(out)

    def _tokenized(self, texts: list[str]) -> Any:
        """A `PrototypeClassifier`'s tokenised batch of `texts` (remembered with a cache; it takes either), else the
        texts themselves."""
        if self.cache is None or not isinstance(self.classifier, PrototypeClassifier):
            return texts
        key = tuple(texts)
        batch = self.cache.get("batches", key)
        if batch is None:
            batch = self.classifier.tokenize(texts)
            self.cache.put("batches", key, batch)
        return batch

    def description_neighbour(self, description: str, exclude_tasks: Iterable[str] = ()) -> tuple[float, str | None]:
        """(similarity, task) of the nearest bank task description (final adapters: generated and uploaded ones are
        not tasks the bank knows), skipping `exclude_tasks`."""
        hits = self.bank.search_text(description, k=1, exclude_tasks=tuple(exclude_tasks), kind="final")
        return (float(hits[0].score), hits[0].task) if hits else (0.0, None)

    def weight_neighbour(self, adapters: Sequence[LoraAdapter], exclude_tasks: Iterable[str] = ()) -> float:
        """Mean over adapters of the similarity to the nearest trained (final) bank adapter (skipping
        `exclude_tasks`); a stored copy of the adapter itself, generated earlier, is no neighbour."""
        exclude, sims = tuple(exclude_tasks), []
        for adapter in adapters:
            hits = self.bank.search_adapter(adapter, k=1, exclude_tasks=exclude, kind="final")
            sims.append(float(hits[0].score) if hits else 0.0)
        return float(np.mean(sims))

    def feature_matrix(self, stats: dict[str, torch.Tensor], desc_sim: float | None,
                       weight_sim: float | None) -> np.ndarray:
        """(n, len(FEATURES)) rows of per-input features (bank features repeated per input; NaN without a bank)."""
        n = stats["max_prob"].shape[0]
        cols = [stats[f].numpy() for f in FEATURES[:3]]
        cols += [np.full(n, np.nan if v is None else v) for v in (desc_sim, weight_sim)]
        return np.stack(cols, axis=1)

    def features(self, description: str, adapters: Sequence[LoraAdapter], inputs: Sequence[str],
                 exclude_tasks: Iterable[str] = (), num_labels: int = 2, probs: torch.Tensor | None = None):
        """Per-input features (n, len(FEATURES)), the predictive stats, and (description sim, its task, weight sim).

        `probs` (S, n, K), when the caller already ran the adapters on the inputs, saves running them again.

        Raises:
            ValueError: no adapters or no inputs.
        """
        if not adapters:
            raise ValueError("score needs at least one adapter")
        if not inputs:
            raise ValueError("score needs inputs: pass inputs=[...] or build the Scorer with probe_texts")
        if probs is None:
            probs = self.class_probs(adapters, inputs, num_labels)
        stats = {k: v.cpu() for k, v in predictive_stats(probs).items()}
        desc_sim, task, weight_sim = None, None, None
        if self.bank is not None:
            desc_sim, task = self.description_neighbour(description, exclude_tasks)
            weight_sim = self.weight_neighbour(adapters, exclude_tasks)
        return self.feature_matrix(stats, desc_sim, weight_sim), stats, (desc_sim, task, weight_sim)

    # ---- the score ----------------------------------------------------------------------------------
    def score(self, description: str, adapters: Sequence[LoraAdapter], inputs: Sequence[str] | None = None,
              exclude_tasks: Iterable[str] = (), num_labels: int = 2) -> UncertaintyScore:
        """Score adapters generated for `description`.

        Args:
            description: the task description the adapters were generated for.
            adapters: one adapter (a deterministic method) or S samples (ABMLL, CVAE).
            inputs: texts to evaluate the predictive distribution on (default: the probe texts).
            exclude_tasks: bank tasks to ignore as neighbours (leave-one-out evaluation).
            num_labels: how many labels the task has.

        Raises:
            ValueError: no adapters, or no inputs and no probe texts.
        """
        inputs = list(inputs) if inputs else self.probe_texts
        x, stats, (desc_sim, task, weight_sim) = self.features(description, adapters, inputs, exclude_tasks, num_labels)
        if self.calibrator is not None:
            cols = [FEATURES.index(f) for f in self.calibrator.features]
            per_input = self.calibrator(x[:, cols])
        else:
            per_input = stats["max_prob"].numpy()
        return UncertaintyScore(
            predictive_entropy=float(stats["predictive_entropy"].mean()),
            expected_entropy=float(stats["expected_entropy"].mean()),
            mutual_information=float(stats["mutual_information"].mean()),
            max_prob=float(stats["max_prob"].mean()),
            description_similarity=desc_sim,
            weight_similarity=weight_sim,
            nearest_task=task,
            confidence=float(np.mean(per_input)),
            calibrated=self.calibrator is not None,
            n_adapters=len(adapters),
            n_inputs=len(inputs),
            per_input_confidence=[float(c) for c in per_input],
            probs=stats["mean_probs"].float().tolist(),
        )


def score(description: str, adapters: Sequence[LoraAdapter], inputs: Sequence[str] | None = None, *,
          scorer: Scorer, num_labels: int = 2) -> UncertaintyScore:
    """Functional form of `Scorer.score` (the scorer holds the classifier, bank and calibrator)."""
    return scorer.score(description, adapters, inputs, num_labels=num_labels)
