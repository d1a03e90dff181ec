"""Reading a task description structurally: which clause talks about which label index, if any.

A description is free text first: both generators always embed the whole of it (Text-to-LoRA's condition), and a
task with no labels (a generation task: "summarise legal text in 3 sentences") is nothing but that text. Label
slots come on top, only where the description clearly names label indices, because a mean-pooled embedding barely
tells "label 0 if Polish, label 1 if Czech" from the reverse (cosine 0.998: issue 5, pitfall 1), yet the two need
opposite adapters. Such a description is cut into clauses; each clause that names a label index goes to that
label's slot and is embedded on its own with the index words and the phrasing filler removed. This module is that
parsing, shared by `hypernet.condition` (the CVAE's condition slots) and `meta.condition` (ABMLL's slot embedding).

A number is a label index only in one of these forms (a bare number in running text is not: "in 3 sentences"):

    after a label noun        "label 0 ...", "class one is ...", "... is label 1", "category 2"
    after an output verb,     "output 1 if ...", "predict 0 for ...", "answer 1 when ...", "return 0 otherwise"
      before a condition
    opening a clause,         "0 = Polish", "0: Polish", "2 is Czech", "1 for Czech", "0 means ...", "..., 0 otherwise"
      before a mapping word
    in parentheses            "Polish (0) or Czech (1)"

Usage::

    segment_description("label 0 if the sentence is Polish, label 1 if it is Czech", max_slots=3)
    # {0: "Polish", 1: "Czech"}
    segment_description("summarise legal text in 3 sentences", max_slots=8)   # {}: free text, no label slots
    label_indices("predict 1 for German")   # [1]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_CLAUSE_SPLIT = re.compile(r"[,;:.!?\n]+|\b(?:and|or|while|whereas|but|otherwise|else)\b", re.IGNORECASE)
_INDEX_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9}
_DIGIT = r"(?<![\w.])(?P<d>\d{1,2})(?![\w.])"  # "3.5", "v2" and "100" are not label indices
_NUMBER = r"(?:(?<![\w.])(?P<d>\d{1,2})(?![\w.])|(?P<w>" + "|".join(_INDEX_WORDS) + r")\b)"
_CONDITION = r"(?=\s*(?:$|[,;:.!?\n)]|\b(?:if|when|whenever|for|where|otherwise|else|unless)\b))"
_CLAUSE_START = r"(?:^|(?<=[,;:.!?\n(])|(?<=\band)|(?<=\bor)|(?<=\bwhile)|(?<=\bbut)|(?<=\botherwise)|(?<=\belse))"
_MAPS_TO = r"(?=\s*(?:$|[=:,;.!?\n]|->|→|=>|[-–]\s|\b(?:is|for|if|when|means?|meaning|stands|otherwise|else)\b))"
_INDEX_FORMS = (
    # "label 0", "class one", "Polish is label 1", "category 2"
    re.compile(r"\b(?:label|class|category|tag)s?\s+(?:is\s+|=\s*|#\s*)?" + _NUMBER, re.IGNORECASE),
    # "output 1 if", "predict 0 for", "answer one when", "return 0 otherwise", "..., output 1."
    re.compile(r"\b(?:output|answer|predict|return|respond\s+with|reply\s+with|say|emit|assign|give|choose|pick|"
               r"mark)\s+" + _NUMBER + _CONDITION, re.IGNORECASE),
    # "0 = Polish", "0: Polish", "2 is Czech", "1 for Czech", "0 otherwise" at the start of a clause
    re.compile(_CLAUSE_START + r"\s*[\"'`(]?\s*" + _DIGIT + _MAPS_TO, re.IGNORECASE),
    # "Polish (0) or Czech (1)"
    re.compile(r"\(\s*" + _DIGIT + r"\s*\)"),
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


def _index_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, end, index) of every label index `text` names, in order of appearance, each number once."""
    found: dict[int, tuple[int, int, int]] = {}
    for form in _INDEX_FORMS:
        for m in form.finditer(text):
            group = "d" if m.group("d") is not None else "w"
            start, end = m.span(group)
            value = int(m.group("d")) if group == "d" else _INDEX_WORDS[m.group("w").lower()]
            found.setdefault(start, (start, end, value))
    return [found[k] for k in sorted(found)]


def label_indices(text: str) -> list[int]:
    """The label indices `text` names, in order of appearance (see the module docstring for what counts).

    Example:
        label_indices("class one is Polish, 2 is Czech, version 3.5") == [1, 2]
        label_indices("summarise legal text in 3 sentences") == []
    """
    return [value for _, _, value in _index_spans(text)]


def _strip_index(clause: str, spans: list[tuple[int, int, int]]) -> str:
    text = clause
    for start, end, _ in reversed(spans):
        text = text[:start] + " " + text[end:]
    text = _INDEX_NOISE.sub(" ", text)
    content = re.sub(r"\s+", " ", _FILLER.sub(" ", text)).strip()
    return content or re.sub(r"\s+", " ", text).strip()


def segment_description(description: str, max_slots: int) -> dict[int, str]:
    """Cut a description into per-label texts: slot index -> its clauses with the index words removed.

    A clause naming exactly one label index goes to that slot; a clause naming none continues the slot before it
    (or is left to the whole-description embedding when no slot came yet); a clause naming several is ambiguous and
    skipped. A description that names no label index has no slots: it is free text only.

    Args:
        description: the task description.
        max_slots: label slots; indices at or beyond it are not label indices ("label 100").

    Returns:
        slot index -> the text of its clauses (empty for free text).

    Example:
        "label 0 if the sentence is Polish, label 1 if it is Czech" -> {0: "Polish", 1: "Czech"}
    """
    slots: dict[int, list[str]] = {}
    current: int | None = None
    for clause in _CLAUSE_SPLIT.split(description):
        if not clause or not clause.strip():
            continue
        spans = [s for s in _index_spans(clause) if s[2] < max_slots]
        idx = sorted({value for _, _, value in spans})
        if len(idx) == 1:
            current = idx[0]
        elif len(idx) > 1:
            current = None
            continue
        if current is None:
            continue
        text = _strip_index(clause, spans)
        if text:
            slots.setdefault(current, []).append(text)
    return {k: " ".join(v) for k, v in slots.items()}


SAME_ORDER, UNKNOWN_ORDER, OTHER_ORDER = 0, 1, 2  # how a task's label names relate to a request's, best first


def _name(label: object) -> str:
    return " ".join(str(label).split()).casefold()


def label_order(task_labels: Sequence[str] | None, labels: Sequence[str]) -> int:
    """How a task's label names relate to a request's label names (case- and space-insensitive): SAME_ORDER, the
    same names in another order (OTHER_ORDER: its label k is another class), or UNKNOWN_ORDER (other classes)."""
    if not task_labels:
        return UNKNOWN_ORDER
    ours, theirs = [_name(n) for n in labels], [_name(n) for n in task_labels]
    return SAME_ORDER if ours == theirs else OTHER_ORDER if sorted(ours) == sorted(theirs) else UNKNOWN_ORDER


def described_order(description: str, task_labels: Sequence[str] | None) -> int:
    """How a task's label names sit in a description's label slots (`segment_description`): SAME_ORDER when each
    name is found in its own index's slot and in no other, OTHER_ORDER when a name is found in another index's slot
    only, else UNKNOWN_ORDER (a free-text description, names not found or found in several slots).

    Example:
        described_order("label 0 if the text is Dutch, label 1 if German", ("German", "Dutch")) -> OTHER_ORDER
    """
    if not task_labels:
        return UNKNOWN_ORDER
    slots = {k: _name(v) for k, v in segment_description(description, len(task_labels)).items()}
    found = [{k for k, text in slots.items() if _name(label) in text} for label in task_labels]
    if any(len(where) == 1 and i not in where for i, where in enumerate(found)):
        return OTHER_ORDER
    return SAME_ORDER if slots and all(where == {i} for i, where in enumerate(found)) else UNKNOWN_ORDER
