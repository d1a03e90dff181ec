"""Generation tasks in the evaluation harness: the scorer per task kind, and the generation-only baselines.

A bank's tasks are scored one way, chosen once from their kind (`task_kind`): classification tasks (label names)
by the accuracy of their provider's classifier (`ClassificationScorer`, the harness's original metric), generation
tasks (``labels == ()``, (input, output) pairs) on a causal LM (`GenerationScorer`): the exact match of the greedy
completion (`bank.causal_lm.exact_match`, case-insensitive, first line) and the mean log-likelihood per token of
the reference output, exactly as `CausalLM.scores` computes them. Normalised gain is computed on each kind's
primary metric (`PRIMARY`): accuracy, or exact match.

Generation-only rows:
    base+description   the base model with the task description as the system message of the chat template
                       (Text-to-LoRA's "base + task description"; `bank.causal_lm.prompt_ids(system=...)`);
    multitask          one LoRA of the oracles' shape (targets, blocks, rank) trained with the causal recipe
                       (`bank.train.causal.train_causal_adapter`) on the union of the in-bank tasks' training pairs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch

from loragen.bank.causal_lm import complete, exact_match, mean_loglik, prompt_ids
from loragen.bank.errors import TaskDataError
from loragen.bank.evaluate.calibration import expected_calibration_error
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Classifier, TaskData
from loragen.bank.train import CausalLM, TrainConfig, train_causal_adapter
from loragen.bank.train.lora_module import layer_index

logger = logging.getLogger(__name__)

Kind = Literal["classification", "generation"]
PRIMARY: dict[Kind, str] = {"classification": "accuracy", "generation": "exact_match"}
DESCRIBED = "base+description"  # the base model prompted with the description (generation tasks only)
# what a generation request can carry besides the description: (input, output) examples, no label names
GENERATION_CONDITIONS = ("description", "examples")


def task_kind(tasks: Sequence[TaskRecord]) -> Kind:
    """"generation" when no task names labels, "classification" when every one does.

    Raises:
        TaskDataError: a mix of both (they are scored with different models and metrics).
    """
    gen = [t.name for t in tasks if not t.labels]
    if gen and len(gen) < len(tasks):
        raise TaskDataError(f"the tasks mix generation tasks ({gen[:3]}...) and classification tasks; evaluate one "
                            "kind at a time (restrict `tasks`)")
    return "generation" if gen else "classification"


class ClassificationScorer:
    """{"accuracy"} of an adapter on a task's test examples, cached by (task, adapter checksum).

    Args:
        classifier: the tasks' classifier.
        examples: task -> its (text, label) test examples.
        max_examples: the first `max_examples` test examples are scored (None: all).
    """

    primary = "accuracy"

    def __init__(self, classifier: Classifier, examples: Callable[[TaskRecord], list],
                 max_examples: int | None) -> None:
        self.classifier, self.examples, self.max_examples = classifier, examples, max_examples
        self._data: dict[str, list[tuple[str, int]]] = {}
        self._cache: dict[tuple[str, str], dict[str, float]] = {}

    def __call__(self, task: TaskRecord, adapter: LoraAdapter | None, system: str | None = None) -> dict[str, float]:
        key = (task.name, adapter.sha256() if adapter is not None else "base")
        if key not in self._cache:
            if task.name not in self._data:
                self._data[task.name] = self.examples(task)[: self.max_examples]
            self._cache[key] = {"accuracy": self.classifier.accuracy(self._data[task.name], adapter,
                                                                     len(task.labels))}
        return self._cache[key]


class GenerationScorer:
    """{"exact_match", "loglik"} of an adapter on a task's (input, output) test pairs, cached by (task, adapter
    checksum, system message).

    Args:
        lm: the causal LM the bank's adapters are for.
        data: task -> its examples (`BankSource(bank).data`: stored in the bank or rebuilt by its provider).
        max_examples: the first `max_examples` test pairs are scored (None: all).
    """

    primary = "exact_match"

    def __init__(self, lm: CausalLM, data: Callable[[TaskRecord], TaskData], max_examples: int | None) -> None:
        self.lm, self.data, self.max_examples = lm, data, max_examples
        self._pairs: dict[str, list[tuple[str, str]]] = {}
        self._cache: dict[tuple[str, str, str], dict[str, float]] = {}
        self._calibration: dict[tuple[str, tuple[str, ...]], dict[str, torch.Tensor]] = {}

    def pairs(self, task: TaskRecord) -> list[tuple[str, str]]:
        if task.name not in self._pairs:
            self._pairs[task.name] = [(str(x), str(y)) for x, y in self.data(task).test[: self.max_examples]]
        return self._pairs[task.name]

    def __call__(self, task: TaskRecord, adapter: LoraAdapter | None, system: str | None = None) -> dict[str, float]:
        """The scores of `adapter` (None: the base model); `system` (base model only) is the system message."""
        key = (task.name, adapter.sha256() if adapter is not None else "base", system or "")
        if key not in self._cache:
            if system and adapter is not None:
                raise ValueError("a system message is scored on the base model only (the adapter carries the task)")
            pairs = self.pairs(task)
            self._cache[key] = described_scores(self.lm, pairs, system) if system else self.lm.scores(pairs, adapter)
        return self._cache[key]


    def calibration(self, task: TaskRecord, adapters: Sequence[LoraAdapter | None]) -> dict[str, torch.Tensor]:
        """Per reference-output token of the task's test pairs, under the predictive distribution averaged over
        `adapters` (a posterior's samples; None: the base model): "confidence" (the top token's probability),
        "correct" (1.0 where the top token is the reference) and "logp" (the reference token's log-probability)."""
        key = (task.name, tuple(a.sha256() if a is not None else "base" for a in adapters))
        if key not in self._calibration:
            probs, targets = self.lm.predictive(self.pairs(task), adapters)
            confidence, top = probs.max(-1)
            logp = probs.gather(-1, targets[:, None]).squeeze(-1).clamp_min(1e-12).log()
            self._calibration[key] = {"confidence": confidence, "correct": (top == targets).float(), "logp": logp}
        return self._calibration[key]


def token_calibration(tokens: Sequence[Mapping[str, torch.Tensor]], n_bins: int = 10) -> dict[str, float]:
    """Calibration of a method's per-token predictive distribution, pooled over the tokens of all its tasks:
    "token_ece" (expected calibration error of the top token, equal-width bins), "token_accuracy" (how often the
    top token is the reference), "token_confidence" (its mean probability), "token_nll" (mean negative
    log-likelihood of the reference token) and "n_tokens"."""
    conf = torch.cat([t["confidence"] for t in tokens])
    correct = torch.cat([t["correct"] for t in tokens])
    logp = torch.cat([t["logp"] for t in tokens])
    return {"token_ece": expected_calibration_error(conf, correct, n_bins), "token_accuracy": correct.mean().item(),
            "token_confidence": conf.mean().item(), "token_nll": -logp.mean().item(), "n_tokens": int(conf.numel())}

def described_scores(lm: CausalLM, pairs: Sequence[tuple[str, str]], system: str,
                     max_length: int = 128) -> dict[str, float]:
    """`CausalLM.scores` of the base model with `system` as the system message of every prompt (the log-likelihood
    over the whole reference output: sequences are not cut at `max_length` when the description lengthens them).

    Raises:
        ValueError: no pairs.
    """
    if not pairs:
        raise ValueError("scores needs at least one (input, output) pair")
    refs = [y for _, y in pairs]
    lengths = [len(lm.tokenizer(y, add_special_tokens=False)["input_ids"]) for y in refs]
    longest = max(lengths)
    full = max(len(prompt_ids(lm.tokenizer, x, system)) + n + 1 for (x, _), n in zip(pairs, lengths))
    loglik = mean_loglik(lm.model, lm.tokenizer, list(pairs), system=system, max_length=max(max_length, full))
    preds = complete(lm.model, lm.tokenizer, [x for x, _ in pairs], system=system,
                     max_new_tokens=min(longest + 2, max_length))
    return {"exact_match": exact_match(preds, refs), "loglik": sum(loglik) / len(loglik)}


def bank_base_model(bank, finals: Mapping[str, str]) -> str:
    """The one base model the tasks' final adapters are for.

    Raises:
        TaskDataError: adapters for several base models.
    """
    models = sorted({r.base_model for r in bank.adapters(kind="final") if r.id in set(finals.values())})
    if len(models) != 1:
        raise TaskDataError(f"the tasks' adapters are for {len(models)} base models {models}; evaluate one base "
                            "model's tasks at a time (restrict `tasks`)")
    return models[0]


def oracle_shaped(config: TrainConfig, oracle: LoraAdapter) -> TrainConfig:
    """`config` with the oracle's rank, alpha, target module names and adapted blocks (a LoRA of the same shape)."""
    paths = oracle.modules
    blocks = sorted({i for i in (layer_index(p) for p in paths) if i is not None})
    return replace(config, r=oracle.r, lora_alpha=oracle.lora_alpha,
                   target_modules=tuple(sorted({p.rsplit(".", 1)[-1] for p in paths})),
                   layers=tuple(blocks) if all(layer_index(p) is not None for p in paths) else None)


def generation_multitask(in_bank: Sequence[TaskRecord], data: Callable[[TaskRecord], TaskData], lm: CausalLM,
                         oracle: LoraAdapter, config: TrainConfig) -> LoraAdapter:
    """One LoRA of the oracles' shape trained with the causal recipe on every in-bank task's training pairs."""
    pairs = [pair for t in in_bank for pair in data(t).train]
    spec = TaskRecord(name="multitask", description=f"multi-task LoRA over {len(in_bank)} in-bank tasks", labels=())
    logger.info("training the multi-task LoRA on %d pairs of %d in-bank generation tasks", len(pairs), len(in_bank))
    return train_causal_adapter(spec, TaskData(pairs, [], []), lm, oracle_shaped(config, oracle)).final


def generation_conditions(conditions: Collection[str]) -> tuple[str, ...]:
    """The conditions a generation task is asked with; the others are left out with a logged reason."""
    dropped = [c for c in conditions if c not in GENERATION_CONDITIONS]
    if dropped:
        logger.warning("conditions %s left out for generation tasks: they have no label names", dropped)
    return tuple(c for c in conditions if c in GENERATION_CONDITIONS)


def generation_shots(task: TaskRecord, data: Callable[[TaskRecord], TaskData], n: int, seed: int
                     ) -> tuple[tuple[str, str], ...]:
    """`n` (input, output) pairs from `task`'s *training* split (what a user who gives "a few examples" gives)."""
    train = [(str(x), str(y)) for x, y in data(task).train]
    return tuple(random.Random(seed).sample(train, min(n, len(train))))


def mean_metrics(scores: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per metric, the mean over `scores` (one dict per wording a task was asked with)."""
    return {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
