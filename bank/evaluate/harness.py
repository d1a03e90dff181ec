"""Evaluation harness: accuracy of every adapter source on the evaluation splits, and normalised gain.

Methods compared (all scored with the same classifier, the tasks' provider's, on each task's test examples):
    base        no adapter (the fixed prototype head alone: near chance);
    oracle      the task's own trained adapter from the bank (the ceiling);
    mean        the mean ΔW of all in-bank final adapters (one adapter for every task);
    multitask   one LoRA trained on the pooled data of all in-bank tasks (it cannot read descriptions);
    retrieval   the bank adapter whose description is nearest to the request's (`RetrievalGenerator`),
                excluding the task itself and every held-out task;
    plus any `AdapterGenerator` passed in (CVAE, ABMLL, ...), once per condition: "description" (the wording
    alone, reported under the method's name), "labels" (+ the label names in order, `NAME+labels`) and "examples"
    (+ 8 labelled training examples, `NAME+8examples`).

Random-description controls (Text-to-LoRA's): every method that reads the description (retrieval and the given
generators) is also asked with a random string of the same length (`NAME+random`) and with the description of
another task of the same split (`NAME+othertask`). A generator that reads its description must score clearly
higher with the aligned one; `EvalReport.summary[split][NAME]["aligned_minus_random"]` holds the gap.

Wording robustness: the "heldout_wording" split (opt-in, `ALL_SPLITS`) asks every task with hand-written wordings no
training text uses; `summary["heldout_wording"][NAME]["wording_minus_template"]` is its accuracy minus the same
method's accuracy with the template description on the same tasks (those also scored in in_bank or heldout_task).

Text style: `evaluate(..., text_style="sentences")` scores on sentence-shaped test texts instead of the tasks' word
strings, where the provider offers them (the built-in suite's language tasks); the adapters and requests are unchanged.

Generation tasks (``labels == ()``, a causal LM's (input, output) pairs; `bank.evaluate.generation`) are scored
with exact match of the greedy completion and the mean log-likelihood of the reference output (`CausalLM.scores`),
normalised gain on exact match; they add the "base+description" row (the description as the system message), ask
generators with the description alone (`generation_conditions`) and train the multi-task LoRA with the causal recipe.

Normalised gain = (acc - acc_base) / (acc_oracle - acc_base) on accuracies aggregated over the split: per-task base
accuracy swings widely with a fixed head (and base(B, A) = 1 - base(A, B)), so per-task ratios are unstable.

Usage::

    with Bank.open(path) as bank:
        report = evaluate(bank, {"cvae": my_generator})
    print(report.table()); report.save_json("bench/results/eval.json"); report.plot("bench/results/eval.png")
"""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import replace
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from loragen.bank.errors import ConfigError, TaskDataError
from loragen.bank.evaluate.generation import (
    DESCRIBED,
    PRIMARY,
    ClassificationScorer,
    GenerationScorer,
    bank_base_model,
    generation_conditions,
    generation_multitask,
    generation_shots,
    mean_metrics,
    task_kind,
    token_calibration,
)
from loragen.bank.evaluate.report import EvalReport
from loragen.bank.evaluate.splits import ALL_SPLITS, EVAL_SPLITS, EvalSplit, eval_descriptions, split_tasks
from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.lora.merge import combine
from loragen.bank.records import TaskRecord
from loragen.bank.retrieval import RetrievalGenerator
from loragen.bank.tasks import (
    PROVIDERS,
    Classifier,
    classifier_for,
    few_shot_examples,
    provider_for,
    provider_name,
)
from loragen.bank.tasks.sources import BankSource
from loragen.bank.train import CausalLM, TrainConfig, train_multitask_adapter
from tqdm import tqdm

logger = logging.getLogger(__name__)

BASELINES = ("base", "oracle", "mean", "multitask", "retrieval", DESCRIBED)  # DESCRIBED: generation tasks only
CONDITIONS = ("description", "labels", "examples")
CONTROLS = ("random", "othertask")  # descriptions that do not describe the task
N_EXAMPLES = 8  # labelled examples given with the "examples" condition
MEAN_RANK = 16  # rank of the SVD-compressed mean adapter


class FixedGenerator:
    """Returns the same adapter whatever the request (the mean and multi-task baselines)."""

    def __init__(self, name: str, adapter: LoraAdapter) -> None:
        self.name, self.adapter = name, adapter

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        return [self.adapter] * request.n_samples


def _final_adapters(bank, tasks: Collection[str]) -> dict[str, str]:
    """Task name -> id of its (latest) final adapter, for the given tasks."""
    return {r.task: r.id for r in bank.adapters(kind="final") if r.task in tasks}


def mean_adapter(adapters: Sequence[LoraAdapter], rank: int = MEAN_RANK) -> LoraAdapter:
    """The mean ΔW of `adapters` as one LoRA (SVD-compressed to `rank`)."""
    return combine(list(adapters), [1.0 / len(adapters)] * len(adapters), method="svd", rank=rank)


def has_text_style(task: TaskRecord, text_style: str) -> bool:
    """Whether `task`'s provider gives it test texts of `text_style` ("words": every task)."""
    if text_style == "words":
        return True
    name = provider_name(task)
    styles = getattr(provider_for(task), "text_styles", None) if name in PROVIDERS else None
    return styles is not None and text_style in styles(task)


def _test_examples(task: TaskRecord, text_style: str, data: Callable[[TaskRecord], Any]) -> list[tuple[str, int]]:
    if text_style == "words":
        return data(task).test  # `BankSource.data`: a user's task's stored examples, else its provider's
    return provider_for(task).data(task, text_style=text_style).test  # type: ignore[call-arg]


def _baseline_generators(bank, tasks: Sequence[TaskRecord], finals: Mapping[str, str], include: Collection[str],
                         multitask: Callable[[list[TaskRecord]], LoraAdapter]) -> dict[str, AdapterGenerator]:
    in_bank = [t for t in tasks if t.split == "train" and t.name in finals]
    gens: dict[str, AdapterGenerator] = {}
    if "mean" in include and in_bank:
        gens["mean"] = FixedGenerator("mean", mean_adapter([bank.get(finals[t.name]) for t in in_bank]))
    if "multitask" in include and in_bank:
        gens["multitask"] = FixedGenerator("multitask", multitask(in_bank))
    if "retrieval" in include:
        gens["retrieval"] = RetrievalGenerator(bank)
    return gens


def _classification_multitask(in_bank: list[TaskRecord], config: TrainConfig, classifier: Classifier) -> LoraAdapter:
    logger.info("training the multi-task LoRA on %d in-bank tasks", len(in_bank))
    return train_multitask_adapter(in_bank, config, classifier).final


def _sample(tasks: list[TaskRecord], k: int | None, seed: int) -> list[TaskRecord]:
    if k is None or k >= len(tasks):
        return tasks
    keep = set(random.Random(seed).sample(range(len(tasks)), k))
    return [t for i, t in enumerate(tasks) if i in keep]


def _aggregate(rows: list[dict[str, Any]], metric: str = "accuracy") -> dict[str, dict[str, dict[str, float]]]:
    """split -> method -> every row metric's mean over the split's tasks, normalised gain (on `metric`), n_tasks."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for split in dict.fromkeys(r["split"] for r in rows):
        per_method: dict[str, list[dict[str, float]]] = {}
        for r in rows:
            if r["split"] == split:
                per_method.setdefault(r["method"], []).append({k: v for k, v in r.items() if k not in _ROW_KEYS})
        means = {m: mean_metrics(v) for m, v in per_method.items()}
        base, oracle = (means[m][metric] if m in means else None for m in ("base", "oracle"))
        summary[split] = {}
        for m, stats in means.items():
            a = stats[metric]
            gain = (a - base) / (oracle - base) if base is not None and oracle is not None and oracle != base else None
            summary[split][m] = {**stats, "normalised_gain": gain, "n_tasks": len(per_method[m])}
    return summary


_ROW_KEYS = ("split", "task", "task_split", "method")  # a row's other keys are its metrics


def _row_name(method: str, condition: str) -> str:
    return {"description": method, "labels": f"{method}+labels", "examples": f"{method}+{N_EXAMPLES}examples",
            "random": f"{method}+random", "othertask": f"{method}+othertask"}[condition]


def random_description(description: str, seed: int) -> str:
    """A random string of lower-case words with the same length as `description` (the control's wording)."""
    rng = random.Random(f"{seed}:{description}")
    letters = "abcdefghijklmnopqrstuvwxyz"
    words, length = [], 0
    while length < len(description):
        word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[: max(1, len(description))]


def _wording_gaps(rows: list[dict[str, Any]], summary: dict[str, dict[str, dict[str, float]]],
                  metric: str = "accuracy") -> None:
    """Add `wording_minus_template` and `n_paired` to each heldout_wording method: its accuracy there minus with the
    template description (in_bank or heldout_task), on the tasks scored both ways."""
    if "heldout_wording" not in summary:
        return
    template = {(r["task"], r["method"]): r[metric] for r in rows if r["split"] in ("in_bank", "heldout_task")}
    for method, stats in summary["heldout_wording"].items():
        paired = [(r[metric], template[(r["task"], method)]) for r in rows
                  if r["split"] == "heldout_wording" and r["method"] == method and (r["task"], method) in template]
        if paired:
            stats["wording_minus_template"] = sum(w - t for w, t in paired) / len(paired)
            stats["n_paired"] = len(paired)


def _control_gaps(summary: dict[str, dict[str, dict[str, float]]], metric: str = "accuracy") -> None:
    """Add `aligned_minus_random` (accuracy with the description minus with a random string) per method."""
    for per_method in summary.values():
        for method, stats in per_method.items():
            random_row = per_method.get(f"{method}+random")
            if random_row is not None:
                stats["aligned_minus_random"] = stats[metric] - random_row[metric]


def evaluate(
    bank,
    methods: Mapping[str, AdapterGenerator] | None = None,
    splits: Sequence[EvalSplit] = EVAL_SPLITS,
    *,
    baselines: Collection[str] = BASELINES,
    tasks: Sequence[str] | None = None,
    max_examples: int | None = 64,
    max_tasks: int | None = None,
    classifier: Classifier | None = None,
    lm: CausalLM | None = None,
    multitask_config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    conditions: Sequence[str] = ("labels",),
    controls: Sequence[str] = CONTROLS,
    text_style: str = "words",
    predictive_samples: int = 0,
) -> EvalReport:
    """Score base, oracle, mean, multi-task, retrieval and the given generators on the evaluation splits.

    Args:
        bank: an open bank built with `loragen bank build` (tasks without a final adapter are skipped).
        methods: extra generators by name; each gets a `GenerationRequest` with the split's wording, the labels,
            seed `seed` and `exclude_tasks={task}`.
        splits: evaluation splits ("in_bank", "heldout_task", "heldout_paraphrase"; "heldout_wording" too, see
            `ALL_SPLITS`).
        baselines: which of `BASELINES` to include ("base" and "oracle" are needed for the normalised gain).
        tasks: restrict to these task names.
        max_examples: test examples per task (None: all).
        max_tasks: evaluate at most this many tasks per split (a fixed random sample, from `seed`).
        classifier: the classifier the tasks are scored with (default: a new one from their provider).
        lm: the causal LM generation tasks are scored with (default: loaded from their adapters' base model).
        multitask_config: recipe of the multi-task LoRA (default: `TrainConfig(steps=300, batch_size=32)`).
        seed: the generators' sampling seed.
        progress: show a progress bar.
        conditions: what the extra generators are given besides the wording (see `CONDITIONS`); each is a row.
        controls: random-description controls (see `CONTROLS`) for retrieval and the extra generators.
        text_style: the test texts: "words" (the tasks' own) or another style their provider offers, e.g.
            "sentences" (the built-in suite's language tasks only; tasks without the style are left out).
        predictive_samples: generation tasks: also report how calibrated each method's per-token predictive
            distribution is on the test outputs (`token_ece`, `token_nll`, ... in the summary, pooled over the
            split's tokens; `generation.token_calibration`): the given generators' with this many sampled adapters
            averaged (a posterior's model average), every other row's with its one adapter; 0: not measured.

    Raises:
        ValueError: an unknown split or baseline name, a bank with no built task, or predictive_samples < 0.
        TaskDataError: tasks of several providers without a classifier given, a task no provider owns, a mix of
            classification and generation tasks, or generation tasks of several base models.
    """
    unknown = [b for b in baselines if b not in BASELINES] + [s for s in splits if s not in ALL_SPLITS] + \
        [c for c in conditions if c not in CONDITIONS] + [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown baselines/splits/conditions {unknown}; baselines: {BASELINES}, splits: "
                         f"{ALL_SPLITS}, conditions: {CONDITIONS}")
    if predictive_samples < 0:
        raise ValueError(f"predictive_samples must be >= 0, got {predictive_samples}")
    all_tasks = [t for t in bank.tasks() if tasks is None or t.name in set(tasks)]
    finals = _final_adapters(bank, {t.name for t in all_tasks})
    all_tasks = [t for t in all_tasks if t.name in finals]
    if not all_tasks:
        raise ValueError(f"the bank {bank.path} has no built task; run `loragen bank build` first")
    all_tasks = [t for t in all_tasks if has_text_style(t, text_style)]
    if not all_tasks:
        raise ValueError(f"no built task of the bank {bank.path} has {text_style!r} test texts")
    kind = task_kind(all_tasks)
    config = multitask_config or TrainConfig(steps=300, min_steps=300, batch_size=32, stop_loss=0.0)
    request_base: dict[str, str] = {}  # the requests name the model the tasks are scored on
    if kind == "generation":
        request_base["base_model"] = bank_base_model(bank, finals)
        lm = lm or CausalLM(request_base["base_model"])
        data = BankSource(bank).data
        score: Callable[..., dict[str, float]] = GenerationScorer(lm, data, max_examples)
        oracle = bank.get(next(iter(finals.values())))
        multitask: Callable[[list[TaskRecord]], LoraAdapter] = functools.partial(
            generation_multitask, data=data, lm=lm, oracle=oracle, config=config)
        conditions, fixed_condition = generation_conditions(conditions), "description"
        shots = lambda t: generation_shots(t, data, N_EXAMPLES, seed)  # noqa: E731
    else:
        providers = sorted({str(provider_name(t)) for t in all_tasks})
        if classifier is None and len(providers) > 1:
            raise TaskDataError(f"the bank's tasks come from several providers {providers}; pass the classifier to "
                                "score them with, or restrict `tasks` to one provider's")
        clf = classifier or classifier_for(all_tasks[0])
        if getattr(clf, "base_model_id", None):  # the adapters are asked for the model they are scored on
            request_base["base_model"] = clf.base_model_id
        stored = BankSource(bank).data
        score = ClassificationScorer(clf, lambda t: _test_examples(t, text_style, stored), max_examples)
        multitask = functools.partial(_classification_multitask, config=config, classifier=clf)
        fixed_condition = "labels"
        shots = lambda t: few_shot_examples(t, N_EXAMPLES, seed)  # noqa: E731
    gens = {m: (g, fixed_condition) for m, g in _baseline_generators(bank, all_tasks, finals, baselines,
                                                                     multitask).items()}
    readers = {m: g for m, (g, _) in gens.items() if m == "retrieval"} | dict(methods or {})
    for m, g in (methods or {}).items():
        gens.update({_row_name(m, c): (g, c) for c in conditions})
    for m, g in readers.items():
        gens.update({_row_name(m, c): (g, c) for c in controls})
    chosen = {s: _sample(split_tasks(all_tasks, s), max_tasks, seed) for s in splits}
    work = [(s, t) for s in splits for t in chosen[s]]
    others = {s: {t.name: chosen[s][(i + 1) % len(chosen[s])] for i, t in enumerate(chosen[s])} for s in splits
              if chosen[s]}
    rows: list[dict[str, Any]] = []
    refused: dict[str, str] = {}
    calibrated = predictive_samples > 0 and kind == "generation"
    sampled = {_row_name(m, c) for m in (methods or {}) for c in ("description", "examples")}
    tokens: dict[tuple[str, str], list] = {}  # (split, row) -> per-token calibration of each scored request
    for split, task in tqdm(work, desc="eval", unit="task", disable=not progress):
        fixed = {"base": None, "oracle": bank.get(finals[task.name])}
        for m in [b for b in ("base", "oracle") if b in baselines]:
            rows.append({"split": split, "task": task.name, "task_split": task.split, "method": m,
                         **score(task, fixed[m])})
            if calibrated:
                tokens.setdefault((split, m), []).append(score.calibration(task, [fixed[m]]))
        if kind == "generation" and DESCRIBED in baselines:
            rows.append({"split": split, "task": task.name, "task_split": task.split, "method": DESCRIBED,
                         **mean_metrics([score(task, None, d) for d in eval_descriptions(task, split)])})
        for m, (gen, condition) in gens.items():
            accs = []
            for description in eval_descriptions(task, split):
                if condition == "random":
                    description = random_description(description, seed)
                elif condition == "othertask":
                    description = eval_descriptions(others[split][task.name], split)[0]
                request = GenerationRequest(
                    description, labels=task.labels if condition == "labels" else None,
                    examples=shots(task) if condition == "examples" else None,
                    n_samples=1, seed=seed, exclude_tasks=frozenset({task.name}), **request_base)
                try:
                    adapter = gen.generate(request)[0]
                    accs.append(score(task, adapter))
                    if calibrated and condition in ("description", "examples"):
                        adapters = (gen.generate(replace(request, n_samples=predictive_samples)) if m in sampled
                                    else [adapter])
                        tokens.setdefault((split, m), []).append(score.calibration(task, adapters))
                except ConfigError as err:  # a channel this generator does not read: no row, and the reason
                    if condition not in ("examples", "labels"):
                        raise
                    refused.setdefault(m, str(err))
                    break
            if accs:
                rows.append({"split": split, "task": task.name, "task_split": task.split, "method": m,
                             **mean_metrics(accs)})
    counts = {s: len(chosen[s]) for s in splits}
    cfg = {"max_examples": max_examples, "max_tasks": max_tasks, "seed": seed, "tasks_per_split": counts,
           "methods": [m for m in gens if m not in refused], "text_style": text_style}
    if refused:
        cfg["refused"] = refused
        logger.warning("rows left out, their generator refused the condition: %s", refused)
    if kind == "generation":
        cfg.update(kind=kind, metric=PRIMARY[kind], base_model=request_base["base_model"])
    if calibrated:
        cfg["predictive_samples"] = predictive_samples
    summary = _aggregate(rows, PRIMARY[kind])
    for (split, m), per_request in tokens.items():
        if m in summary.get(split, {}):
            summary[split][m].update(token_calibration(per_request))
    _control_gaps(summary, PRIMARY[kind])
    _wording_gaps(rows, summary, PRIMARY[kind])
    return EvalReport(rows=rows, summary=summary, config=cfg)
