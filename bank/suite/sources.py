"""Text sources for the task suite: real words and entities shipped inside Faker (no download at run time).

A *source* is a named pool of distinct strings: a language's word list ("lang:pl"), a kind of entity in one locale
("person@de_DE"). Faker has traps, measured in issue 4: many locales fall back to the same Latin lorem list,
fil_PH and tl_PH are identical, job titles, colours and countries are shared across locales. So every source used
is declared here explicitly and `check_distinct` verifies that no two sources of a task family overlap much.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

# Language word lists: locale of the Faker lorem provider. All have >= 460 distinct words and are pairwise
# distinct (checked by `check_distinct`); en_PH/la (Latin lorem), az_AZ and vi_VN (< 90 words) are left out.
LANGUAGES: dict[str, tuple[str, str]] = {
    # code: (display name, Faker lorem locale)
    "en": ("English", "en_US"),
    "de": ("German", "de_DE"),
    "nl": ("Dutch", "nl_NL"),
    "da": ("Danish", "da_DK"),
    "fr": ("French", "fr_FR"),
    "it": ("Italian", "it_IT"),
    "es": ("Spanish", "es_ES"),
    "pl": ("Polish", "pl_PL"),
    "cs": ("Czech", "cs_CZ"),
    "fil": ("Filipino", "fil_PH"),
    "ru": ("Russian", "ru_RU"),
    "uk": ("Ukrainian", "uk_UA"),
}

# Entity kinds: Faker method and the phrase used in descriptions.
KINDS: dict[str, tuple[str, str]] = {
    "person": ("name", "person names"),
    "company": ("company", "company names"),
    "job": ("job", "job titles"),
    "city": ("city", "city names"),
    "street": ("street_address", "street addresses"),
    "street_name": ("street_name", "street names"),
    "colour": ("color_name", "colour names"),
    "country": ("country", "country names"),
}
# Entity-type tasks tell these kinds apart within one locale.
ENTITY_KINDS = ("person", "company", "job", "city", "street", "colour", "country")
ENTITY_LOCALE = "en_US"

# Locales whose person names, cities, street names and companies are their own (pairwise overlap checked).
LOCALES: dict[str, str] = {
    "en_US": "American",
    "de_DE": "German",
    "fr_FR": "French",
    "it_IT": "Italian",
    "es_ES": "Spanish",
    "pl_PL": "Polish",
    "nl_NL": "Dutch",
    "cs_CZ": "Czech",
    "fi_FI": "Finnish",
    "tr_TR": "Turkish",
}
# Entity kinds that differ per locale (jobs, colours and countries are largely shared, so not used here).
LOCALE_KINDS = ("person", "city", "street_name", "company")

POOL_DRAWS = 1500  # Faker calls per entity pool; duplicates are dropped
MIN_POOL = 40  # smallest pool accepted (es_ES and similar have few distinct city names)
MAX_OVERLAP = 0.2  # |A ∩ B| / min(|A|, |B|) above this means two sources are not distinct
# Faker element lists built from a set, so their order (and a seeded draw from them) follows PYTHONHASHSEED and
# changes from process to process: (locale, provider attribute). Sorted before drawing. Found by hashing every pool
# in three processes (only city@it_IT differed; it made two evaluations of one checkpoint disagree).
SET_ORDERED: tuple[tuple[str, str], ...] = (("it_IT", "cities"),)


@dataclass(frozen=True)
class Source:
    """A named pool of distinct strings.

    Args:
        name: "lang:<code>" or "<kind>@<locale>".
        items: the distinct strings, in a fixed order.
        label: how descriptions name it ("Polish", "German person names", ...).
    """

    name: str
    items: tuple[str, ...]
    label: str


@lru_cache(maxsize=None)
def language_source(code: str) -> Source:
    """The Faker lorem word list of one language."""
    name, locale = LANGUAGES[code]
    module = importlib.import_module(f"faker.providers.lorem.{locale}")
    words = tuple(dict.fromkeys(w.strip() for w in module.Provider.word_list if w.strip()))
    return Source(f"lang:{code}", words, name)


@lru_cache(maxsize=None)
def entity_source(kind: str, locale: str, seed: int = 0) -> Source:
    """A pool of distinct entities of one kind (Faker method) in one locale, drawn with a fixed seed."""
    from faker import Faker

    method, phrase = KINDS[kind]
    fake = Faker(locale)
    for provider in fake.get_providers():
        for attr in (a for loc, a in SET_ORDERED if loc == locale and isinstance(getattr(provider, a, None), list)):
            setattr(provider, attr, sorted(getattr(provider, attr)))
    fake.seed_instance(seed)
    draw: Callable[[], str] = getattr(fake, method)
    items = tuple(dict.fromkeys(" ".join(draw().split()) for _ in range(POOL_DRAWS)))
    return Source(f"{kind}@{locale}", items, phrase)


def overlap(a: Source, b: Source) -> float:
    """Share of the smaller pool that also occurs in the other one."""
    sa, sb = set(a.items), set(b.items)
    return len(sa & sb) / max(1, min(len(sa), len(sb)))


def check_distinct(sources: list[Source], pairs: list[tuple[str, str]] | None = None,
                   max_overlap: float = MAX_OVERLAP, min_pool: int = MIN_POOL) -> None:
    """Raise if any source is too small or two sources overlap more than `max_overlap`.

    Args:
        sources: the sources to check.
        pairs: the source-name pairs that must be distinct (those a task compares); default: all pairs.

    Raises:
        ValueError: listing every offending source or pair.
    """
    problems = [f"{s.name}: only {len(set(s.items))} distinct items (< {min_pool})"
                for s in sources if len(set(s.items)) < min_pool]
    by_name = {s.name: s for s in sources}
    todo = [(by_name[a], by_name[b]) for a, b in pairs] if pairs is not None else itertools.combinations(sources, 2)
    for a, b in todo:
        share = overlap(a, b)
        if share > max_overlap:
            problems.append(f"{a.name} and {b.name} share {share:.0%} of their items")
    if problems:
        raise ValueError("task-suite sources are not distinct:\n  - " + "\n  - ".join(problems))
