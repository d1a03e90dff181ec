"""Task data: balanced train/val/test examples built from a task's sources, deterministic from the suite seed.

Each text joins random items of one source (words with spaces, entities with commas) until it fills the
classifier's token window, so every text is exactly `max_tokens` tokens long after truncation: MiniLM cuts
non-English words into many pieces, and texts of natural length would let length alone tell languages apart.
No text occurs in two splits. An evaluation-only variant ("sentences", `task_data(..., text_style=...)`) gives
language tasks sentence-shaped test texts instead.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.suite import sources as S
from loragen.bank.tasks.provider import TaskData
from loragen.bank.tasks.registry import BUILTIN, provider_name

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def source(key: str) -> S.Source:
    """The source named `key` ("lang:pl" or "<kind>@<locale>").

    Raises:
        ValueError: an unknown source name.
    """
    if key.startswith("lang:") and key[5:] in S.LANGUAGES:
        return S.language_source(key[5:])
    kind, _, locale = key.partition("@")
    if kind in S.KINDS and locale:
        return S.entity_source(kind, locale)
    raise ValueError(f"unknown task source {key!r}; expected 'lang:<code>' ({list(S.LANGUAGES)}) or '<kind>@<locale>'")


@lru_cache(maxsize=None)
def _token_counts(key: str) -> tuple[int, ...]:
    """MiniLM tokens per item of a source (WordPiece splits on spaces and punctuation, so counts add up)."""
    from loragen.bank.base_model import load_tokenizer

    tok = load_tokenizer()
    ids = tok(list(source(key).items), add_special_tokens=False)["input_ids"]
    return tuple(max(1, len(i)) for i in ids)


def make_text(key: str, rng: random.Random, max_tokens: int) -> str:
    """One text of items from source `key` filling at least `max_tokens` tokens (the window is then full)."""
    src = source(key)
    counts = _token_counts(key)
    sep, sep_tokens = (" ", 0) if key.startswith("lang:") else (", ", 1)
    parts: list[str] = []
    used = _SPECIAL_TOKENS - sep_tokens
    while used < max_tokens:
        i = rng.randrange(len(src.items))
        parts.append(src.items[i])
        used += counts[i] + sep_tokens
    return sep.join(parts)


def make_sentences(key: str, rng: random.Random) -> str:
    """One to three sentence-shaped strings of a language's words (evaluation-only "sentences" text style).

    Faker ships no grammatical sentences for the suite's languages, only word lists; this is the closest packaged
    form: real words of the language as sentences of natural length (5-14 words, first word capitalised, commas,
    a full stop or question mark), unlike the training texts' unpunctuated strings that fill the token window.
    """
    words = source(key).items
    sentences = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        picked = [words[rng.randrange(len(words))] for _ in range(rng.randint(5, 14))]
        if len(picked) > 7 and rng.random() < 0.5:
            picked[rng.randrange(2, len(picked) - 2)] += ","
        sentences.append(picked[0][:1].upper() + picked[0][1:] + " " + " ".join(picked[1:]) +
                         ("?" if rng.random() < 0.15 else "."))
    return " ".join(sentences)


TEXT_STYLES = ("words", "sentences")


def text_styles(spec: TaskRecord) -> tuple[str, ...]:
    """The test-text styles `spec` has: "words" always; "sentences" for tasks whose sources are all languages."""
    keys = spec.data_ref.get("sources", ())
    return TEXT_STYLES if keys and all(str(k).startswith("lang:") for k in keys) else TEXT_STYLES[:1]


def _split_sizes(ref: dict) -> tuple[int, int, int]:
    return int(ref.get("n_train", 256)), int(ref.get("n_val", 64)), int(ref.get("n_test", 128))


def task_data(spec: TaskRecord, n_train: int | None = None, n_val: int | None = None,
              n_test: int | None = None, text_style: str = "words") -> TaskData:
    """Rebuild a suite task's examples (labels balanced, order shuffled, texts unique across splits).

    Args:
        spec: a suite task (its `data_ref` names the sources, seed, token window and split sizes).
        n_train, n_val, n_test: override the split sizes (smaller sets for tests).
        text_style: "words" (the training texts) or "sentences" (evaluation only, language tasks: the test split
            is `make_sentences` texts instead; train and val stay the same).

    Raises:
        TaskDataError: the task is not a built-in suite task, or has no such text style.
    """
    if text_style not in text_styles(spec):
        raise TaskDataError(f"task {spec.name!r} has no {text_style!r} test texts; it has {text_styles(spec)}")
    data = _word_data(spec, n_train, n_val, n_test)
    if text_style == "words":
        return data
    rng = random.Random(zlib.crc32(f"{spec.data_ref.get('seed', 0)}/{spec.name}/sentences".encode()))
    keys = list(spec.data_ref["sources"])
    test = [(make_sentences(keys[i % len(keys)], rng), i % len(keys)) for i in range(len(data.test))]
    rng.shuffle(test)
    return TaskData(data.train, data.val, test)


def _word_data(spec: TaskRecord, n_train: int | None, n_val: int | None, n_test: int | None) -> TaskData:
    ref = spec.data_ref
    if provider_name(spec) != BUILTIN or "sources" not in ref:
        raise TaskDataError(f"task {spec.name!r} has no built-in suite data (data_ref={ref}); pass your own examples")
    sizes = _split_sizes(ref)
    sizes = (n_train or sizes[0], n_val or sizes[1], n_test or sizes[2])
    keys, max_tokens = list(ref["sources"]), int(ref.get("max_tokens", 32))
    rng = random.Random(zlib.crc32(f"{ref.get('seed', 0)}/{spec.name}".encode()))
    seen: set[str] = set()
    splits = []
    for n in sizes:
        examples = []
        for i in range(n):
            label = i % len(keys)
            text = make_text(keys[label], rng, max_tokens)
            while text in seen:  # keep every text in one split only
                text = make_text(keys[label], rng, max_tokens)
            seen.add(text)
            examples.append((text, label))
        rng.shuffle(examples)
        splits.append(examples)
    return TaskData(*splits)
