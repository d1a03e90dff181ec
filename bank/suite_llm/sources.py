"""Example pools for the generative suite: real data shipped in PyPI packages, nothing fetched at run time.

A *cell* is (family, op, part): e.g. ("date-name", "month", "pt") asks for the Portuguese month name of an English
date. `pool(family, op, part, seed)` returns that cell's examples as (input, output) pairs with distinct inputs:

    date-name      English date "Tuesday, 14 March 2021" -> month or weekday name in a language (babel / CLDR);
    date-format    ISO date -> a locale's short, medium or long date, or a locale's long date -> ISO (babel / CLDR);
    number-words   1-99 in digits -> cardinal or ordinal words, or words -> digits, in a language (num2words);
    number-format  a plain decimal number -> a locale's number, euro or dollar amount (babel / CLDR);
    person-name    "Given Family" (Faker, per locale) -> the family name, the given name, or "Family, Given";
    word-list      3-5 words of one language (Faker's word lists) -> the last word, the second, or all reversed.

Inputs and outputs are short (a few tokens for SmolLM2), and spaces are plain ASCII spaces (CLDR's no-break and
narrow no-break spaces are normalised). Families, ops and parts were chosen with `bench/llm_suite_probe.py`.
"""

from __future__ import annotations

import datetime
import importlib
import random
from collections.abc import Callable
from functools import lru_cache

POOL_SIZE = 160  # examples drawn per cell where the source is larger (splits take 64 + 16 + 32)
# number-words uses 1..99 (a tens word and a units word): with 1..999, 80 LoRA steps reached 0.28 exact match
# (Spanish digits -> words) and 0.47 (French words -> digits), with 1..99 0.53 and 0.53
# (bench/results/llm_suite_probe.json).
NUMBER_RANGE = range(1, 100)

Pair = tuple[str, str]

# date-name: target languages (babel locale -> English name).
DATE_LANGUAGES: dict[str, str] = {
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese", "nl": "Dutch",
    "pl": "Polish", "sv": "Swedish", "da": "Danish", "tr": "Turkish", "fi": "Finnish", "cs": "Czech",
    "ro": "Romanian", "id": "Indonesian", "hu": "Hungarian",
}
# date-format and number-format: locales and how a person names their conventions.
LOCALES: dict[str, str] = {
    "en_US": "US English", "en_GB": "British English", "de_DE": "German", "fr_FR": "French", "es_ES": "Spanish",
    "es_MX": "Mexican Spanish", "it_IT": "Italian", "pt_BR": "Brazilian Portuguese", "nl_NL": "Dutch",
    "pl_PL": "Polish", "sv_SE": "Swedish", "da_DK": "Danish", "tr_TR": "Turkish",
}
# number-words: num2words languages.
NUMBER_LANGUAGES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "pl": "Polish", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "ro": "Romanian",
    "id": "Indonesian", "tr": "Turkish", "ca": "Catalan",
}
NAME_LOCALES: dict[str, str] = {
    "en_US": "American", "de_DE": "German", "fr_FR": "French", "es_ES": "Spanish", "it_IT": "Italian",
    "pl_PL": "Polish", "nl_NL": "Dutch", "pt_BR": "Brazilian", "tr_TR": "Turkish", "sv_SE": "Swedish",
}
WORD_LANGUAGES: dict[str, tuple[str, str]] = {  # code -> (English name, Faker lorem locale)
    "en": ("English", "en_US"), "de": ("German", "de_DE"), "fr": ("French", "fr_FR"), "es": ("Spanish", "es_ES"),
    "it": ("Italian", "it_IT"), "pl": ("Polish", "pl_PL"), "nl": ("Dutch", "nl_NL"), "da": ("Danish", "da_DK"),
}

_FIRST_DAY, _N_DAYS = datetime.date(1950, 1, 1), 100 * 365  # dates 1950-2049
_WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")


def clean(text: str) -> str:
    """One line with plain single spaces (CLDR uses U+00A0 and U+202F between groups and before symbols)."""
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


def english_date(day: datetime.date) -> str:
    """The date as an English speaker writes it in full: "Tuesday, 14 March 2021"."""
    return f"{_WEEKDAYS_EN[day.weekday()]}, {day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def _dates(rng: random.Random, n: int = POOL_SIZE) -> list[datetime.date]:
    offsets = rng.sample(range(_N_DAYS), n)
    return [_FIRST_DAY + datetime.timedelta(days=k) for k in offsets]


def _date_name(op: str, part: str, rng: random.Random) -> list[Pair]:
    from babel.dates import get_day_names, get_month_names

    if op == "month":
        names = get_month_names("wide", context="stand-alone", locale=part)
        return [(english_date(d), clean(names[d.month])) for d in _dates(rng)]
    names = get_day_names("wide", context="stand-alone", locale=part)
    return [(english_date(d), clean(names[d.weekday()])) for d in _dates(rng)]


def _date_format(op: str, part: str, rng: random.Random) -> list[Pair]:
    from babel.dates import format_date

    if op == "read":  # the locale's long date back to ISO
        return [(clean(format_date(d, "long", locale=part)), d.isoformat()) for d in _dates(rng)]
    return [(d.isoformat(), clean(format_date(d, op, locale=part))) for d in _dates(rng)]


def _number_words(op: str, part: str, rng: random.Random) -> list[Pair]:
    from num2words import num2words

    numbers = rng.sample(NUMBER_RANGE, len(NUMBER_RANGE))
    if op == "read":
        return [(clean(num2words(n, lang=part)), str(n)) for n in numbers]
    to = "cardinal" if op == "cardinal" else "ordinal"
    return [(str(n), clean(num2words(n, lang=part, to=to))) for n in numbers]


def _amounts(rng: random.Random) -> list[float]:
    """Amounts with 5 to 7 integer digits (every locale groups them; some leave 4 digits alone) and two decimals,
    the last one not 0 (so no locale drops it)."""
    out = []
    for _ in range(POOL_SIZE):
        digits = rng.randint(5, 7)
        out.append(rng.randrange(10 ** (digits - 1), 10**digits) + rng.choice([c for c in range(100) if c % 10]) / 100)
    return out


def _number_format(op: str, part: str, rng: random.Random) -> list[Pair]:
    from babel.numbers import format_currency, format_decimal

    def render(x: float) -> str:
        if op == "decimal":
            return format_decimal(x, locale=part, decimal_quantization=False)
        return format_currency(x, "EUR" if op == "euro" else "USD", locale=part)

    return [(f"{x:.2f}", clean(render(x))) for x in _amounts(rng)]


@lru_cache(maxsize=None)
def person_names(locale: str, draws: int = 600) -> tuple[tuple[str, str], ...]:
    """Distinct (given, family) name pairs from Faker's `locale` lists, one word each, drawn with a fixed seed."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(0)
    pairs = ((fake.first_name(), fake.last_name()) for _ in range(draws))
    return tuple(dict.fromkeys(p for p in pairs if " " not in p[0] + p[1] and p[0] != p[1]))


def _person_name(op: str, part: str, rng: random.Random) -> list[Pair]:
    names = list(person_names(part))
    chosen = rng.sample(names, min(POOL_SIZE, len(names)))
    out = {"family": lambda g, f: f, "given": lambda g, f: g, "swap": lambda g, f: f"{f}, {g}"}[op]
    return [(f"{g} {f}", out(g, f)) for g, f in chosen]


@lru_cache(maxsize=None)
def words(code: str) -> tuple[str, ...]:
    """Distinct lower-case alphabetic words of 3 to 10 letters from Faker's word list for language `code`."""
    module = importlib.import_module(f"faker.providers.lorem.{WORD_LANGUAGES[code][1]}")
    kept = (w for w in module.Provider.word_list if w.isalpha() and w.islower() and 3 <= len(w) <= 10)
    return tuple(dict.fromkeys(kept))


def _word_list(op: str, part: str, rng: random.Random) -> list[Pair]:
    vocab = words(part)
    lists = [rng.sample(vocab, rng.randint(3, 5)) for _ in range(POOL_SIZE)]
    out = {"last": lambda w: w[-1], "second": lambda w: w[1], "reverse": lambda w: ", ".join(reversed(w))}[op]
    return [(", ".join(w), out(w)) for w in lists]


# family -> (ops, parts, pool builder)
FAMILIES: dict[str, tuple[tuple[str, ...], dict, Callable[[str, str, random.Random], list[Pair]]]] = {
    "date-name": (("month", "weekday"), DATE_LANGUAGES, _date_name),
    "date-format": (("short", "medium", "long", "read"), LOCALES, _date_format),
    "number-words": (("cardinal", "ordinal", "read"), NUMBER_LANGUAGES, _number_words),
    "number-format": (("decimal", "euro", "dollar"), LOCALES, _number_format),
    "person-name": (("family", "given", "swap"), NAME_LOCALES, _person_name),
    "word-list": (("last", "second", "reverse"), {k: v[0] for k, v in WORD_LANGUAGES.items()}, _word_list),
}


def pool(family: str, op: str, part: str, seed: int = 0) -> list[Pair]:
    """The examples of one cell as (input, output) pairs, deterministic in (family, op, part, seed) (and cached).

    Raises:
        ValueError: an unknown family, op or part (the message lists the known ones).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown generative-suite family {family!r}; known: {sorted(FAMILIES)}")
    ops, parts, build = FAMILIES[family]
    if op not in ops or part not in parts:
        raise ValueError(f"family {family!r} has no cell ({op!r}, {part!r}); ops {list(ops)}, parts {list(parts)}")
    return list(_cached_pool(family, op, part, seed))


@lru_cache(maxsize=1024)
def _cached_pool(family: str, op: str, part: str, seed: int) -> tuple[Pair, ...]:
    build = FAMILIES[family][2]
    return tuple(build(op, part, random.Random(f"{family}/{op}/{part}/{seed}")))
