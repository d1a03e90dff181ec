"""The built-in generative suite for SmolLM2-135M-Instruct: short input -> short output tasks, fixed by a seed.

Each family is a grid of ops x parts (languages or locales); a task is one cell, named "<family>/<op>/<part>"
(e.g. "date-name/month/pt"). About 15% of each family's cells are held out, chosen so that every op and every part
of the family still occurs in some training task: a held-out task is a new combination of seen parts ("month ->
Portuguese" held out while "month -> Spanish" and "weekday -> Portuguese" are in the bank). Cells whose
input->output maps coincide with another cell's (e.g. British and French short dates) are left out of `CELLS`;
tests/unit/bank/suite_llm checks that.

The evaluation splits match `loragen.bank.suite`'s:

    in_bank              tasks with split "train", asked with their own description;
    heldout_task         tasks with split "heldout" (new combinations), asked with their description;
    heldout_paraphrase   in-bank tasks asked with a held-out wording (a wording no training text uses).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from functools import lru_cache

from loragen.bank.evaluate.splits import EVAL_SPLITS, eval_descriptions, split_tasks  # noqa: F401 (re-exported: the suite API)
from loragen.bank.records import TaskRecord
from loragen.bank.suite_llm import sources as S
from loragen.bank.suite_llm import wordings as W
from loragen.bank.suite_llm.data import SUITE_NAME, task_data

SUITE_VERSION = 1
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
N_TRAIN, N_VAL, N_TEST = 64, 16, 32
SPLIT_SIZES = {"number-words": (48, 8, 32)}  # 99 numbers in all; other families use (N_TRAIN, N_VAL, N_TEST)
HELDOUT_SHARE = 0.15


_ALL_DATE_LANGS = tuple(S.DATE_LANGUAGES)
# Swedish month names are Dutch ones in 9 of 12 months, so Swedish has weekdays but no months and no long dates.
_LONG_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL", "da_DK", "tr_TR")

# family -> op -> parts. Left out as duplicates of a listed cell: short dates fr_FR/pt_BR (= en_GB), en_IN/es_MX
# (= it_IT), de_CH (= de_DE), tr_TR (= pl_PL), sv_SE (= the ISO input); medium dates de_DE (= short pl_PL), sv_SE
# (Swedish and Dutch month names mostly agree); decimal en_GB/es_MX (= en_US), es_ES, it_IT, pt_BR, nl_NL, tr_TR
# (= de_DE), pl_PL/sv_SE (= fr_FR); euro en_GB, es_ES/it_IT (= de_DE), pl_PL/sv_SE (= fr_FR), pt_BR (= nl_NL);
# dollar pt_BR (= nl_NL). en_IN numbers only differ from en_US above 99,999, and CLDR's de_CH leaves numbers of
# a million and more ungrouped, so neither is used for numbers.
CELLS: dict[str, dict[str, tuple[str, ...]]] = {
    "date-name": {"month": tuple(c for c in _ALL_DATE_LANGS if c != "sv"), "weekday": _ALL_DATE_LANGS},
    "date-format": {
        "short": ("en_US", "en_GB", "de_DE", "es_ES", "it_IT", "nl_NL", "pl_PL"),
        "medium": ("en_US", "en_GB", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL", "da_DK", "tr_TR"),
        "long": _LONG_LOCALES,
        "read": _LONG_LOCALES,
    },
    "number-words": {  # num2words' Catalan ordinals fail for some numbers
        "cardinal": tuple(S.NUMBER_LANGUAGES), "ordinal": tuple(c for c in S.NUMBER_LANGUAGES if c != "ca"),
        "read": tuple(S.NUMBER_LANGUAGES),
    },
    "number-format": {
        "decimal": ("en_US", "de_DE", "fr_FR"),
        "euro": ("en_US", "de_DE", "fr_FR", "es_MX", "nl_NL", "tr_TR"),
        "dollar": ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "es_MX", "it_IT", "nl_NL", "pl_PL", "sv_SE", "tr_TR"),
    },
    "person-name": {op: tuple(S.NAME_LOCALES) for op in ("family", "given", "swap")},
    "word-list": {op: tuple(S.WORD_LANGUAGES) for op in ("last", "second", "reverse")},
}


def _part_name(family: str, part: str) -> str:
    return S.FAMILIES[family][1][part]


def _heldout_cells(cells: list[tuple[str, str]], rng: random.Random) -> set[tuple[str, str]]:
    """~HELDOUT_SHARE of a family's (op, part) cells, keeping every op and every part in some training cell."""
    order = cells[:]
    rng.shuffle(order)
    target = max(1, round(HELDOUT_SHARE * len(cells)))
    held: set[tuple[str, str]] = set()
    for cell in order:
        if len(held) >= target:
            break
        rest = [c for c in cells if c not in held and c != cell]
        if any(c[0] == cell[0] for c in rest) and any(c[1] == cell[1] for c in rest):
            held.add(cell)
    return held


def _wordings(family: str, op: str, part: str, example: tuple[str, str],
              rng: random.Random) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(description, training paraphrases, held-out paraphrases) for one task."""
    ws = W.WORDINGS[(family, op)]
    fill = lambda t: W.render(t, _part_name(family, part), ws.what[op], example)  # noqa: E731
    train = [fill(t) for t in ws.train]
    rng.shuffle(train)
    return train[0], tuple(train[1:]), tuple(fill(t) for t in ws.heldout)


def _record(family: str, op: str, part: str, split: str, seed: int, rng: random.Random) -> TaskRecord:
    name = f"{family}/{op}/{part}"
    ref = {"suite": SUITE_NAME, "version": SUITE_VERSION, "seed": seed, "base_model": BASE_MODEL, "family": family,
           "op": op, "part": part}
    ref["n_train"], ref["n_val"], ref["n_test"] = SPLIT_SIZES.get(family, (N_TRAIN, N_VAL, N_TEST))
    bare = TaskRecord(name=name, description="", labels=(), family=family, split=split,  # type: ignore[arg-type]
                      data_ref=ref)
    example = task_data(bare).train[0]  # the inline example comes from the training split only
    description, paraphrases, heldout = _wordings(family, op, part, example, rng)
    return dataclasses.replace(bare, description=description, paraphrases=paraphrases,
                               heldout_paraphrases=heldout)


@lru_cache(maxsize=4)
def _suite(seed: int) -> tuple[TaskRecord, ...]:
    rng = random.Random(f"loragen-llm-suite-{seed}")
    tasks = []
    for family, ops in CELLS.items():
        cells = [(op, part) for op, parts in ops.items() for part in parts]
        held = _heldout_cells(cells, rng)
        for op, part in cells:
            split = "heldout" if (op, part) in held else "train"
            tasks.append(_record(family, op, part, split, seed, rng))
    return tuple(tasks)


def load_suite(seed: int = 0) -> list[TaskRecord]:
    """The built-in generative suite for `seed` (same seed, same tasks, wordings, held-out cells and data).

    Args:
        seed: drives the held-out cells, which wording becomes the description, and every task's examples.

    Returns:
        TaskRecords (labels empty, data_ref["suite"] == "smollm2-gen"), family by family.

    Usage::

        from loragen.bank.suite_llm import load_suite, task_data
        tasks = load_suite()
        train, val, test = task_data(tasks[0]).train, task_data(tasks[0]).val, task_data(tasks[0]).test
    """
    return list(_suite(seed))


def training_texts(tasks: Sequence[TaskRecord]) -> set[str]:
    """Every wording a generator may train on: in-bank tasks' descriptions and (training) paraphrases."""
    return {d for t in tasks if t.split == "train" for d in (t.description, *t.paraphrases)}
