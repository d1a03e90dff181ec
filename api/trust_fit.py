"""Fit the trust models on evaluation cases the generators never trained on, and report them honestly.

For every case (a task of an evaluation split, asked with one of the split's wordings under one condition) and
every method: generate the point adapter (and sampled ones), measure its real accuracy on the task's test data
(exact match of the greedy completion for generation tasks on a causal LM: the target is then "exact_match"),
compute the label-free features (`api.trust.features`, bank neighbours of a held-out task excluded), then fit one
`meta.trust.TrustModel` per method. The numbers reported (JSON + PNG) are the task-grouped cross-validated ones.

Cases come from `bank.evaluate.splits` (`split_tasks`, `eval_descriptions`), so every split it defines plugs in;
`fit_trust` itself takes any list of `EvalCase`.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from loragen.api.generators import build_methods
from loragen.api.probe import Probe
from loragen.api.trust import SAMPLED, features, peer_adapters, trust_path, trust_samples
from loragen.api.uncertainty import PROBE_TEXTS
from loragen.bank.errors import TaskDataError
from loragen.bank.evaluate import N_EXAMPLES, eval_descriptions, split_tasks
from loragen.bank.evaluate.generation import GENERATION_CONDITIONS, generation_shots
from loragen.bank.generator import GenerationRequest
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import BankSource
from loragen.meta.trust import TrustModel
from loragen.meta.trust_report import cross_validated_metrics, metrics_by_condition, trust_diagram

CONDITIONS = ("description", "labels", "examples")
# Test examples a case's accuracy is measured on, by task kind: all of a built-in suite classification task's (128;
# with 64 the binomial noise of the measured accuracy alone was ~0.02 of the trust model's error), fewer greedy
# completions for a causal LM's generation task.
TEST_EXAMPLES = {"classification": 128, "generation": 32}


def default_test_examples(cases: Sequence[EvalCase]) -> int:
    """The default test examples per case for `cases`' task kind (`TEST_EXAMPLES`)."""
    return TEST_EXAMPLES["classification" if not cases or cases[0].task.labels else "generation"]


@dataclass(frozen=True)
class EvalCase:
    """One calibration case: `task` asked with `description` (a wording of `split`) under `condition`."""

    split: str
    task: TaskRecord
    description: str
    condition: str = "description"


def eval_cases(bank: Any, splits: Sequence[str], conditions: Sequence[str] = CONDITIONS,
               max_tasks: int | None = None, seed: int = 0, kind: str = "classification") -> list[EvalCase]:
    """The cases of `splits` among the bank's tasks of `kind` ("classification": tasks with label names;
    "generation": (input, output) tasks, asked without the "labels" condition), at most `max_tasks` tasks per split
    (a fixed sample)."""
    generation = kind == "generation"
    tasks = [t for t in bank.tasks() if bool(t.labels) != generation]
    if generation:
        conditions = [c for c in conditions if c in GENERATION_CONDITIONS]
    cases = []
    for split in splits:
        chosen = split_tasks(tasks, split)
        if max_tasks is not None and max_tasks < len(chosen):
            chosen = random.Random(seed).sample(chosen, max_tasks)
        cases += [EvalCase(split, t, d, c) for t in chosen for d in eval_descriptions(t, split) for c in conditions]
    return cases


def training_wordings(bank: Any) -> list[str]:
    """The wordings generators train on: in-bank tasks' descriptions and in-bank paraphrases (never held-out ones)."""
    return sorted({w for t in bank.tasks() if t.split == "train" for w in (t.description, *t.paraphrases)})


def reference_embeddings(bank: Any) -> np.ndarray | None:
    """fp16 embeddings of `training_wordings` (the `train_similarity` reference; None: no in-bank wording)."""
    wordings = training_wordings(bank)
    return bank.encoder.encode(wordings).astype(np.float16) if wordings else None


def _few_shot(train: Sequence[tuple[str, int]], k: int, n: int, seed: int) -> tuple[tuple[str, int], ...]:
    """`n` training examples, labels round-robin (as `bank.tasks.few_shot_examples`, from data read via the bank)."""
    pool = list(train)
    random.Random(seed).shuffle(pool)
    by_label = [[e for e in pool if e[1] == y] for y in range(k)]
    return tuple(by_label[i % k][i // k] for i in range(n) if i // k < len(by_label[i % k]))


def _request(case: EvalCase, base_model: str, seed: int, data: Any) -> GenerationRequest:
    held_out = case.task.split != "train"  # the generators never saw this task: hide it from every bank lookup
    examples = None
    if case.condition == "examples":
        examples = (_few_shot(data.train, len(case.task.labels), N_EXAMPLES, seed) if case.task.labels
                    else generation_shots(case.task, lambda _: data, N_EXAMPLES, seed))  # (input, output) pairs
    return GenerationRequest(
        case.description, labels=case.task.labels if case.condition == "labels" else None, examples=examples,
        base_model=base_model, n_samples=1, seed=seed,
        exclude_tasks=frozenset({case.task.name}) if held_out else frozenset())


def _measure(model: Any, task: TaskRecord, test: Sequence[tuple], adapter: Any) -> float:
    """The adapter's real score on the test examples: accuracy (a classifier), or exact match (a `CausalLM`)."""
    if task.labels:
        return float(model.accuracy(test, adapter, len(task.labels)))
    return float(model.scores([(str(x), str(y)) for x, y in test], adapter)["exact_match"])


def _probe(model: Any) -> Probe:
    """A classifier's probe, or a causal LM's (token statistics)."""
    from loragen.bank.train import CausalLM

    return Probe(causal=(model.model, model.tokenizer)) if isinstance(model, CausalLM) else Probe(classifier=model)


def collect(bank: Any, generators: Mapping[str, Any], cases: Sequence[EvalCase], classifier: Any, *,
            max_examples: int = TEST_EXAMPLES["classification"], seed: int = 0, reference: np.ndarray | None = None,
            progress: bool = True, defaults: bool = False) -> dict[str, list[dict]]:
    """Per method, one record per case: its features, the measured accuracy (exact match) and the case's identity.

    Args:
        classifier: what the tasks are scored with: their classifier, or for generation tasks the `CausalLM`.
        defaults: compute the features as `loragen generate "..."` with only the defaults does: no bank (the
            built-in suite as neighbours, `api.suite_neighbours`), no inputs, no extra samples, the other learned
            methods as peers; retrieval, which needs a bank, gets no records. The adapters and the measured
            accuracy are the same.

    Raises:
        TaskDataError: a case's task has no test data loragen can rebuild.
    """
    probe, source = _probe(classifier), BankSource(bank)
    ref_model = None if reference is None else TrustModel((), np.zeros((0, 0)), np.zeros(0), [],
                                                          reference_embeddings=reference)
    out: dict[str, list[dict]] = {m: [] for m in generators}
    neighbours = None
    if defaults:
        from loragen.api.suite_neighbours import suite_neighbours

        neighbours = suite_neighbours()
    for case in tqdm(cases, desc="trust", unit="case", disable=not progress):
        data = source.data(case.task)  # suite tasks rebuilt by their provider, a user's read from the bank
        request = _request(case, classifier.base_model_id, seed, data)
        test = data.test[:max_examples]
        inputs = [x for x, _ in data.val[:PROBE_TEXTS]]  # unlabeled inputs, as `--inputs` would give
        points = peer_adapters(generators, request)
        for method, generator in generators.items():
            if method not in points:
                continue
            if defaults:
                if method.partition("@")[0] == "retrieve":
                    continue
                row = features(request, [points[method]], probe=probe, model=ref_model, neighbours=lambda: neighbours,
                               encode=lambda text: bank.encoder.encode([text])[0], exclude=request.exclude_tasks,
                               peers={m: a for m, a in points.items()
                                      if m != method and m.partition("@")[0] != "retrieve"})
            else:
                # a labelled row (`eval --method abmll@b=DIR`) samples as its method does
                samples = trust_samples(method.partition("@")[0], generator, request, [points[method]])
                row = features(request, [points[method]], probe=probe, bank=bank, model=ref_model, samples=samples,
                               peers={m: a for m, a in points.items() if m != method}, inputs=inputs,
                               exclude=request.exclude_tasks)
            acc = _measure(classifier, case.task, test, points[method])
            out[method].append({"task": case.task.name, "split": case.split, "condition": case.condition,
                                "description": case.description, "measured": float(acc), "features": row})
    return out


def fit_trust(bank: Any, generators: Mapping[str, Any], cases: Sequence[EvalCase], classifier: Any, *,
              checkpoints: Mapping[str, Path | None], max_examples: int | None = None, seed: int = 0,
              write: bool = True, json_path: Path | None = None, plot_path: Path | None = None,
              progress: bool = True) -> dict:
    """Fit and write a trust model per method; return the cross-validated report.

    Args:
        classifier: the tasks' classifier, or the `CausalLM` of generation tasks (the target is then exact match).
        generators: method -> generator (cvae, abmll, retrieve). checkpoints: method -> its checkpoint directory
            (where `trust.json` goes; retrieval's goes next to the bank).
        cases: the calibration cases (e.g. `eval_cases(bank, ["heldout_task", ...])`).
        write: write the trust files. json_path / plot_path: the bench report and the diagram (None: skip).
        max_examples: test examples per case (None: `TEST_EXAMPLES` of the tasks' kind).

    Raises:
        ValueError: too few tasks to fit on (see `meta.trust.MIN_GROUPS`).
    """
    if not cases:
        raise TaskDataError("no calibration case: the splits hold no task of this kind in this bank")
    target = "accuracy" if cases[0].task.labels else "exact_match"
    max_examples = max_examples or default_test_examples(cases)
    reference = reference_embeddings(bank)
    records = collect(bank, generators, cases, classifier, max_examples=max_examples, seed=seed,
                      reference=reference, progress=progress)
    report: dict[str, Any] = {"splits": sorted({c.split for c in cases}), "n_cases": len(cases), "target": target,
                              "max_examples": max_examples, "bank": str(bank.path), "methods": {}}
    curves = {}
    for method, recs in records.items():
        meta = {"method": method, "base_model": classifier.base_model_id, "splits": report["splits"],
                "bank": str(bank.path), "n_cases": len(recs), "sampled": method in SAMPLED}
        model = TrustModel.fit([r["features"] for r in recs], [r["measured"] for r in recs],
                               [r["task"] for r in recs], target=target, meta=meta, reference_embeddings=reference)
        cv, metrics = cross_validated_metrics(model)
        for r, est in zip(recs, cv):
            r.update(predicted=est.expected, low=est.low, high=est.high, used=list(est.features))
        model.meta["cross_validated"] = metrics
        path = trust_path(method, checkpoints.get(method), bank.path)
        if write and path is not None:
            model.save(path)
        report["methods"][method] = {"trust_file": str(path) if write and path else None, "metrics": metrics,
                                     "by_condition": metrics_by_condition(recs), "cases": recs}
        curves[method] = ([r["predicted"] for r in recs], [r["measured"] for r in recs])
    if plot_path is not None:
        png = trust_diagram(curves, plot_path)
        report["plot"] = str(png) if png else None
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
    return report


def fit_bank(bank_path: str | Path | None, methods: Sequence[str], *, splits: Sequence[str] | None = None,
             conditions: Sequence[str] | None = None, max_tasks: int | None = None, max_examples: int | None = None,
             seed: int = 0, write: bool = True, json_path: Path | None = None, plot_path: Path | None = None,
             progress: bool = True) -> dict:
    """`loragen trust fit` on a bank: its calibration cases, scorer and generators, then `fit_trust`.

    Args:
        bank_path: the bank (None: the default one).
        methods: `NAME[=CHECKPOINT]` specs (cvae / abmll with their checkpoint, retrieve).
        splits: calibration splits (default: every split except in_bank). conditions: default all three.
        max_examples: test examples per case (None: `TEST_EXAMPLES` of the bank's task kind).
        Others: as for `fit_trust`.

    Raises:
        TaskDataError: the splits hold no task of the bank's kind. CheckpointError: a method that cannot load.
    """
    from loragen.bank.evaluate import ALL_SPLITS
    from loragen.bank.store import Bank

    splits = list(splits or [s for s in ALL_SPLITS if s != "in_bank"])
    with Bank.open(bank_path) as bank:
        finals = {r.task: r.id for r in bank.adapters(kind="final")}
        kind = _kind(bank, finals)
        cases = eval_cases(bank, splits, conditions or CONDITIONS, max_tasks, seed, kind=kind)
        if not cases:
            raise TaskDataError(f"splits {splits} hold no {kind} task in {bank.path}; build held-out "
                                "tasks (`loragen bank build`) or name other --split")
        scorer, classifier = bank_scorer(bank, kind, finals, cases[0].task)
        generators, checkpoints = build_methods(list(methods), bank, classifier, causal=causal_of(scorer))
        return fit_trust(bank, generators, cases, scorer, checkpoints=checkpoints, max_examples=max_examples,
                         seed=seed, write=write, json_path=json_path, plot_path=plot_path, progress=progress)


def _kind(bank, finals) -> str:
    """"generation" when the bank's built tasks (`finals`: task -> final adapter id) are (input, output) tasks,
    else "classification"."""
    from loragen.bank.errors import TaskDataError
    from loragen.bank.evaluate.generation import task_kind

    tasks = [t for t in bank.tasks() if t.name in finals]
    try:
        return task_kind(tasks) if tasks else "classification"
    except TaskDataError as err:  # a bank of both kinds: its classification tasks, as before generation tasks
        print(f"warning: {err}; fitting on its classification tasks", file=sys.stderr)
        return "classification"


def bank_scorer(bank: Any, kind: str, finals: Mapping[str, str], task: TaskRecord) -> tuple[Any, Any]:
    """What a bank's tasks are scored with, as (scorer, classifier): for generation tasks the `CausalLM` the bank's
    adapters are for (exact match; classifier None), else the classifier of `task` (one of the bank's tasks) twice.
    `finals`: task -> final adapter id. Shared by `loragen trust fit` and `loragen eval`.

    Raises:
        TaskDataError: a classification task with neither a provider's classifier nor a bank adapter's base model;
            generation adapters of several base models.
    """
    if kind == "generation":  # scored by exact match on the causal LM the bank's adapters are for
        from loragen.bank.evaluate.generation import bank_base_model
        from loragen.bank.train import CausalLM

        return CausalLM(bank_base_model(bank, finals)), None
    classifier = _classifier(bank, task)
    return classifier, classifier


def causal_of(scorer: Any) -> tuple[Any, Any] | None:
    """(model, tokenizer) of a `bank_scorer` scorer that is a causal LM, else None."""
    from loragen.bank.train import CausalLM

    return (scorer.model, scorer.tokenizer) if isinstance(scorer, CausalLM) else None


def _classifier(bank, task):
    """The classifier the tasks are scored with: their provider's, else (a user's stored task) one on the base
    model of the task's bank adapter."""
    from loragen.api.base_models import load_model
    from loragen.bank.errors import TaskDataError
    from loragen.bank.tasks import classifier_for

    try:
        return classifier_for(task)
    except TaskDataError:
        bases = [r.base_model for r in bank.adapters(kind="final") if r.task == task.name and r.base_model]
        if not bases:
            raise
        return load_model(bases[0], "cpu").classifier
