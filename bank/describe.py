"""Reading a task description structurally: which clause talks about which label index.

A mean-pooled description embedding barely tells "label 0 if Polish, label 1 if Czech" from the reverse (cosine
0.998: issue 5, pitfall 1), yet the two need opposite adapters. Both generators therefore cut a description into
clauses, give each clause that names a label index ("label 0 ...", "... is 1") to that label's slot, and embed
each slot's text on its own with the index words and the phrasing filler removed. This module is that parsing,
shared by `hypernet.condition` (the CVAE's condition slots) and `meta.condition` (ABMLL's slot embedding).

Usage::

    segment_description("label 0 if the sentence is Polish, label 1 if it is Czech", max_slots=3)
    # {0: "Polish", 1: "Czech"}
    label_indices("predict 1 for German")   # [1]
"""

from __future__ import annotations

import re

_CLAUSE_SPLIT = re.compile(r"[,;:.!?\n]+|\b(?:and|or|while|whereas|but|otherwise|else)\b", re.IGNORECASE)
_INDEX_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9}
# A label index: a standalone number, or a number word right after "label"/"class"/... ("class one").
_INDEX = re.compile(
    r"(?<![\w.])(\d{1,2})(?![\w.])|\b(?:label|class|category|output|answer|tag)\s+(?:is\s+)?("
    + "|".join(_INDEX_WORDS) + r")\b",
    re.IGNORECASE,
)
# Words that only say "this is a label index"; removed so a slot's text is about its class alone.
_INDEX_NOISE = re.compile(r"\b(?:labels?|class(?:es)?|categor(?:y|ies)|outputs?|answers?|tags?|ids?|index)\b",
                          re.IGNORECASE)
# Filler that says how a class is phrased, not which class it is ("if the text is written in Polish" -> "Polish").
# Removing it makes a slot's text nearly the same across wordings, which is what held-out paraphrases need.
_FILLER = re.compile(
    r"\b(?:if|when|whenever|where|for|the|a|an|this|that|it|its|is|are|was|be|being|of|in|on|to|as|with|by|"
    r"text|texts|input|inputs|sentence|sentences|string|strings|sample|example|line|document|passage|snippet|"
    r"written|made|composed|consisting|contains?|containing|uses?|using|language|predict|return|give|assign|mark|"
    r"say|choose|pick|means?|meaning|stands?|should|must|will|would|then)\b|[=:>→\-–()\[\]\"'`]",
    re.IGNORECASE,
)


def label_indices(text: str) -> list[int]:
    """The label indices `text` names, in order of appearance (digits, or number words after "label"/"class")."""
    found = []
    for m in _INDEX.finditer(text):
        found.append(int(m.group(1)) if m.group(1) is not None else _INDEX_WORDS[m.group(2).lower()])
    return found


def _strip_index(clause: str) -> str:
    text = _INDEX.sub(" ", clause)
    text = _INDEX_NOISE.sub(" ", text)
    content = re.sub(r"\s+", " ", _FILLER.sub(" ", text)).strip()
    return content or re.sub(r"\s+", " ", text).strip()


def segment_description(description: str, max_slots: int) -> dict[int, str]:
    """Cut a description into per-label texts: slot index -> its clauses with the index words removed.

    A clause naming exactly one label index goes to that slot; a clause naming none continues the slot before it
    (or is left to the global token when no slot came yet); a clause naming several is ambiguous and skipped.

    Args:
        description: the task description.
        max_slots: label slots; indices at or beyond it are not label indices ("classify the 100 sentences").

    Returns:
        slot index -> the text of its clauses.

    Example:
        "label 0 if the sentence is Polish, label 1 if it is Czech" -> {0: "Polish", 1: "Czech"}
    """
    slots: dict[int, list[str]] = {}
    current: int | None = None
    for clause in _CLAUSE_SPLIT.split(description):
        if not clause or not clause.strip():
            continue
        idx = sorted(set(i for i in label_indices(clause) if i < max_slots))
        if len(idx) == 1:
            current = idx[0]
        elif len(idx) > 1:
            current = None
            continue
        if current is None:
            continue
        text = _strip_index(clause)
        if text:
            slots.setdefault(current, []).append(text)
    return {k: " ".join(v) for k, v in slots.items()}
