"""What ABMLL trains with on a given bank: its tasks' examples, the likelihood, the LoRA layout.

The built-in suite (tasks of a registered classification provider) keeps its own path: the provider's examples and
classifier, the config's layout. A user's bank (tasks whose examples the bank stores, `bank.tasks.STORED`) is read
on its own terms, never falling back to the suite:

    base model   `base_model` if given, else the one most of the tasks' final adapters are for
    likelihood   a classifier (PrototypeClassifier over that encoder) for classification tasks, the causal LM's
                 token log-likelihood for generation tasks (`meta.likelihood.choose_kind`)
    examples     the bank's stored examples (train split: queries; validation split: support)
    layout       the config's (r, target modules) when some final adapter fits it, else the one most of the
                 final adapters for that base model share (so warm starts from the bank's oracles are possible)

Every refusal is a `ConfigError` that says what to run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from loragen.bank.errors import ConfigError, TaskDataError
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import Example, TaskSource, classification_provider
from loragen.meta.config import ABMLLConfig
from loragen.meta.data import known_adapters, source_examples, task_examples
from loragen.meta.likelihood import CAUSAL_LM, CLASSIFIER, Likelihood, LikelihoodSpec, as_likelihood, choose_kind
from loragen.meta.model import LoraLayout

log = logging.getLogger(__name__)

GIVE_DATA = "import the tasks with their examples (`loragen bank tasks import MANIFEST`)"
GIVE_ADAPTERS = ("give the tasks final adapters (`loragen bank train`, or `loragen bank import DIR --kind final "
                 "--task NAME`)")
MAX_LABELS = 8  # label prototypes of bank.train.classifier


@dataclass
class Plan:
    """Everything `meta.train.train_abmll` needs besides the config's training section."""

    tasks: list[TaskRecord]
    likelihood: Likelihood
    spec: LikelihoodSpec
    model_config: ABMLLConfig
    examples: Callable[[TaskRecord], tuple[list[Example], list[Example]]]
    adapters: dict[str, LoraAdapter]


def suite_plan(source: TaskSource, tasks: list[TaskRecord], config: ABMLLConfig, provider: str,
               classifier=None) -> Plan:
    """A registered provider's tasks (the built-in suite): its classifier and examples, the config's layout."""
    classifier = classifier or classification_provider(tasks[0]).classifier()
    likelihood = as_likelihood(classifier)
    spec = LikelihoodSpec(CLASSIFIER, likelihood.base_model_id, provider=provider)
    return Plan(tasks, likelihood, spec, config, task_examples(), known_adapters(source, tasks))


def task_kind(task: TaskRecord) -> str:
    return "classification" if task.labels else "generation"


def _bad_examples(task: TaskRecord, examples: Sequence) -> str | None:
    """Why a task's training examples cannot train its likelihood, or None."""
    if not examples:
        return "no training examples"
    if task.labels:
        if not 2 <= len(task.labels) <= MAX_LABELS:
            return f"{len(task.labels)} labels (the classifier takes 2 to {MAX_LABELS})"
        if any(not (isinstance(y, int) and 0 <= y < len(task.labels)) for _, y in examples):
            return f"examples whose label is not an index in [0, {len(task.labels) - 1}]"
    elif any(not isinstance(y, str) for _, y in examples):
        return "generation examples whose output is not text"
    return None


def usable_tasks(source: TaskSource, tasks: list[TaskRecord]) -> list[TaskRecord]:
    """The tasks whose stored examples can train the likelihood (the others are logged and left out).

    Raises:
        ConfigError: none of them can.
    """
    usable, problems = [], []
    for task in tasks:
        try:
            why = _bad_examples(task, source.data(task).train)
        except TaskDataError as err:
            why = str(err)
        if why is None:
            usable.append(task)
        else:
            problems.append(f"{task.name}: {why}")
    if problems and usable:
        log.warning("ABMLL leaves out %d task(s) without usable examples: %s", len(problems), "; ".join(problems[:5]))
    if not usable:
        raise ConfigError(f"none of the bank's {len(tasks)} in-bank tasks has examples ABMLL can train on ("
                          + "; ".join(problems[:5]) + f"); {GIVE_DATA}")
    return usable


def _base_model(finals: dict[str, LoraAdapter], base_model: str | None) -> str:
    from loragen.bank.base_model import canonical_base_model_id

    if base_model is not None:
        return canonical_base_model_id(base_model)
    counts = Counter(a.base_model for a in finals.values())
    if not counts:
        raise ConfigError("the bank's tasks have no final adapters to tell which base model ABMLL is for: pass "
                          f"--base-model NAME|DIR (base_model=), or {GIVE_ADAPTERS}")
    if len(counts) > 1:
        log.warning("final adapters for several base models %s: ABMLL trains for the most common one; pick another "
                    "with --base-model", dict(counts))
    return counts.most_common(1)[0][0]


def _fits(adapter: LoraAdapter, layout: LoraLayout) -> bool:
    return tuple(adapter.modules) == layout.modules and adapter.r == layout.r


def _layout_config(model, config: ABMLLConfig, finals: list[LoraAdapter], base: str) -> ABMLLConfig:
    """The config's layout if it exists in the model and some final adapter fits it, else the final adapters'
    most common (target modules, r, alpha)."""
    try:
        layout = LoraLayout.from_model(model, config, base)
        if not finals or any(_fits(a, layout) for a in finals):
            return config
    except ValueError:
        if not finals:
            names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ConfigError(f"the base model {base} has no linear layer named {list(config.target_modules)} (it "
                              f"has {names[:12]}): set model.target_modules in --config, or {GIVE_ADAPTERS} and "
                              "ABMLL takes their layout") from None
    from loragen.bank.train.lora_module import layer_index

    key = Counter((tuple(sorted(a.target_modules)), a.r, a.lora_alpha,
                   tuple(sorted({layer_index(m) for m in a.modules} - {None})) or None) for a in finals
                  ).most_common(1)[0][0]
    blocks = {layer_index(n) for n, m in model.named_modules() if isinstance(m, nn.Linear)} - {None}
    layers = None if key[3] is None or set(key[3]) == blocks else key[3]
    log.info("ABMLL layout from the bank's final adapters: target modules %s, r=%d, lora_alpha=%g, blocks %s",
             *key[:3], "all" if layers is None else f"{layers[0]}-{layers[-1]}")
    return dataclasses.replace(config, target_modules=key[0], r=key[1], lora_alpha=key[2], layers=layers)


def bank_plan(source: TaskSource, tasks: list[TaskRecord], config: ABMLLConfig, base_model: str | None = None,
              classifier=None, device: str = "cpu") -> Plan:
    """A user's bank: its stored examples, the likelihood for its base model and task kind, the adapters' layout.

    Args:
        source: the bank (`BankSource`) or a source with the tasks' examples.
        tasks: its in-bank tasks (all stored in the bank).
        config: the model config (its layout is kept when the bank's adapters fit it).
        base_model: the base model (default: the one most final adapters are for).
        classifier: a classifier or likelihood to reuse when it is the one this bank needs (saves loading).
        device: where a newly built likelihood runs.

    Raises:
        ConfigError: no usable examples, no base model to train for, tasks of both kinds, a task kind the base
            model cannot score, or a layout the base model does not have.
    """
    tasks = usable_tasks(source, tasks)
    finals = known_adapters(source, tasks)
    base = _base_model(finals, base_model)
    kind = choose_kind(base, [task_kind(t) for t in tasks])
    spec = LikelihoodSpec(kind, base)
    given = as_likelihood(classifier) if classifier is not None else None
    likelihood = given if given is not None and spec.matches(given) else spec.build(device)
    mine = {k: a for k, a in finals.items() if a.base_model == base}
    model_config = _layout_config(likelihood.model, config, list(mine.values()), base)
    log.info("ABMLL on %d bank tasks: %s likelihood over %s, %d with a final adapter", len(tasks),
             "token log-likelihood" if kind == CAUSAL_LM else "classifier", base, len(mine))
    return Plan(tasks, likelihood, spec, model_config, source_examples(source), mine)
