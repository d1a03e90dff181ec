"""The built-in task suite: >= 300 classification tasks over real text from Faker, deterministic from a seed.

Families:
    lang     which language a string of words is in (pairs, both label orders, and a few three-way groups);
    entity   which kind of entity a list holds (person names vs city names, ...), en_US;
    locale   which locale a list of entities comes from (German vs French person names, ...).

Every task's description says what each label means; both orders of a pair are separate tasks, so only the
description tells which label is which. This module decides which tasks and wordings the evaluation splits
(`bank.evaluate.splits`) hold out: held-out tasks (split "heldout") are label combinations never seen in training
(both orders held out together), while every language / entity kind / locale occurs in some training task; each
task's held-out paraphrases use templates never used in any training text.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from loragen.bank.records import TaskRecord
from loragen.bank.suite import sources as S

SUITE_VERSION = 1
MAX_TOKENS = 32  # texts fill exactly this many MiniLM tokens (with [CLS]/[SEP]): no length shortcut
N_TRAIN, N_VAL, N_TEST = 256, 64, 128

# Held-out shares of the label combinations, per family.
HELDOUT_SHARE = 0.15
N_TRIPLES = 14
LOCALE_PAIRS_PER_KIND = 16


@dataclass(frozen=True)
class _Template:
    """A description wording: prefix + joiner.join(clause for each label) + suffix."""

    prefix: str
    clause: str  # uses {k} (label index) and {x} (what the label means)
    joiner: str
    suffix: str = "."

    def render(self, meanings: Sequence[str]) -> str:
        body = self.joiner.join(self.clause.format(k=k, x=x) for k, x in enumerate(meanings))
        text = self.prefix + body + self.suffix
        return text[0].upper() + text[1:]


# {what} is "written in" for languages and "made of" for entity lists; both read naturally before {x}.
_TRAIN_TEMPLATES = (
    _Template("", "label {k} if the text is {what} {x}", ", "),
    _Template("Classify the text: ", "{x} is label {k}", "; "),
    _Template("Which is it? ", "{k} = {x}", ", "),
    _Template("", "predict {k} for text {what} {x}", " and "),
)
_HELDOUT_TEMPLATES = (
    _Template("", "output {k} when the input is {what} {x}", "; "),
    _Template("Tell the classes apart: ", "class {k} is text {what} {x}", ", "),
)
_WHAT = {"lang": "written in", "entity": "made of", "locale": "made of"}


def _descriptions(family: str, meanings: Sequence[str],
                  rng: random.Random) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    what = _WHAT[family]
    train = [
        _Template(t.prefix, t.clause.replace("{what}", what), t.joiner, t.suffix).render(meanings)
        for t in _TRAIN_TEMPLATES
    ]
    rng.shuffle(train)
    held = tuple(
        _Template(t.prefix, t.clause.replace("{what}", what), t.joiner, t.suffix).render(meanings)
        for t in _HELDOUT_TEMPLATES
    )
    return train[0], tuple(train[1:3]), held


def _heldout_combinations(combos: list[tuple[str, ...]], share: float, rng: random.Random) -> set[tuple[str, ...]]:
    """Pick ~share of the combinations to hold out, keeping every item in at least one training combination."""
    order = combos[:]
    rng.shuffle(order)
    held: set[tuple[str, ...]] = set()
    target = max(1, round(share * len(combos)))
    for combo in order:
        if len(held) >= target:
            break
        rest = [c for c in combos if c not in held and c != combo]
        if all(any(item in c for c in rest) for item in combo):
            held.add(combo)
    return held


def _record(family: str, name: str, keys: Sequence[str], meanings: Sequence[str], split: str, seed: int,
            rng: random.Random) -> TaskRecord:
    description, paraphrases, heldout = _descriptions(family, meanings, rng)
    return TaskRecord(
        name=name,
        description=description,
        labels=tuple(meanings),
        paraphrases=paraphrases,
        family=family,
        split=split,  # type: ignore[arg-type]
        data_ref={"suite": "builtin", "version": SUITE_VERSION, "seed": seed, "sources": list(keys),
                  "max_tokens": MAX_TOKENS, "n_train": N_TRAIN, "n_val": N_VAL, "n_test": N_TEST},
        heldout_paraphrases=heldout,
    )


def _ordered_tasks(family: str, prefix: str, combos: list[tuple[str, ...]], held: set[tuple[str, ...]],
                   source_key, meaning, seed: int, rng: random.Random, both_orders: bool = True) -> list[TaskRecord]:
    tasks = []
    for combo in combos:
        orders = [combo, combo[::-1]] if both_orders and len(combo) == 2 else [combo]
        for order in orders:
            name = f"{prefix}/" + "-vs-".join(order)
            split = "heldout" if combo in held else "train"
            tasks.append(_record(family, name, [source_key(x) for x in order], [meaning(x) for x in order],
                                 split, seed, rng))
    return tasks


def _lang_tasks(seed: int, rng: random.Random) -> list[TaskRecord]:
    codes = list(S.LANGUAGES)
    pairs = list(itertools.combinations(codes, 2))
    held = _heldout_combinations(pairs, HELDOUT_SHARE, rng)
    key, meaning = (lambda c: f"lang:{c}"), (lambda c: S.LANGUAGES[c][0])
    tasks = _ordered_tasks("lang", "lang", pairs, held, key, meaning, seed, rng)
    triples = rng.sample(list(itertools.combinations(codes, 3)), N_TRIPLES)
    triples = [tuple(rng.sample(t, 3)) for t in triples]  # random label order
    held3 = _heldout_combinations(triples, HELDOUT_SHARE, rng)
    return tasks + _ordered_tasks("lang", "lang3", triples, held3, key, meaning, seed, rng, both_orders=False)


def _entity_tasks(seed: int, rng: random.Random) -> list[TaskRecord]:
    pairs = list(itertools.combinations(S.ENTITY_KINDS, 2))
    held = _heldout_combinations(pairs, HELDOUT_SHARE, rng)
    key = lambda k: f"{k}@{S.ENTITY_LOCALE}"  # noqa: E731
    meaning = lambda k: S.KINDS[k][1]  # noqa: E731
    return _ordered_tasks("entity", "entity", pairs, held, key, meaning, seed, rng)


def _locale_tasks(seed: int, rng: random.Random) -> list[TaskRecord]:
    tasks = []
    for kind in S.LOCALE_KINDS:
        pairs = rng.sample(list(itertools.combinations(S.LOCALES, 2)), LOCALE_PAIRS_PER_KIND)
        held = _heldout_combinations(pairs, HELDOUT_SHARE, rng)
        key = lambda loc, kind=kind: f"{kind}@{loc}"  # noqa: E731
        meaning = lambda loc, kind=kind: f"{S.LOCALES[loc]} {S.KINDS[kind][1]}"  # noqa: E731
        tasks += _ordered_tasks("locale", f"locale/{kind}", pairs, held, key, meaning, seed, rng)
    return tasks


def load_suite(seed: int = 0) -> list[TaskRecord]:
    """The built-in task suite for `seed` (same seed, same tasks, descriptions and splits).

    Args:
        seed: drives the held-out combinations, description wordings, three-way groups and locale pairs.

    Returns:
        TaskRecords with split "train" (in-bank) or "heldout", sorted by nothing but construction order.
    """
    rng = random.Random(f"loragen-suite-{seed}")
    return _lang_tasks(seed, rng) + _entity_tasks(seed, rng) + _locale_tasks(seed, rng)


def training_texts(tasks: Sequence[TaskRecord]) -> set[str]:
    """Every description a generator may train on: in-bank tasks' descriptions and (training) paraphrases."""
    return {d for t in tasks if t.split == "train" for d in (t.description, *t.paraphrases)}


def check_sources(tasks: Sequence[TaskRecord]) -> None:
    """Check that every source the tasks use is big enough and distinct from each source it is compared with.

    Raises:
        ValueError: listing every too-small source and every overlapping pair.
    """
    from loragen.bank.suite.data import source

    names = sorted({k for t in tasks for k in t.data_ref["sources"]})
    pairs = sorted({tuple(sorted(p)) for t in tasks for p in itertools.combinations(t.data_ref["sources"], 2)})
    S.check_distinct([source(n) for n in names], pairs)  # type: ignore[arg-type]
