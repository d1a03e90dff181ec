"""Hand-written, human-style task descriptions for the wording-robustness split ("heldout_wording"), never trained on.

The suite's own descriptions (`tasks.py`) come from six templates that all read "label k if the text is ... x";
the held-out paraphrases are two more of the same kind. A user writes questions, "the answer is 1 when ...", label
names in parentheses, the classes in the opposite order to their labels, "0 = ..., 1 = ...", "if it's X say 0,
otherwise 1", long chatty requests and terse ones. This module holds such wordings, per task family, as templates
(`GENERAL` for any number of labels, `PAIRS` for two), and renders a few of them per task deterministically.

They reach only the evaluation split, through `MiniLMSuite.wordings` (`bank.evaluate.splits`): they are not part of
`TaskRecord` (whose description and paraphrases are what training reads), so no training data builder can see them,
and none equals or contains a training text (checked by the suite's tests).

Usage::

    from loragen.bank.suite.wordings import wording_descriptions
    wording_descriptions(task)            # e.g. ["Polish: 0 / Czech: 1", "Answer 1 if it's in Czech and ..."]
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from loragen.bank.records import TaskRecord

N_PER_TASK = 3  # wordings the evaluation asks each task with (one of them names the classes in reverse order)


@dataclass(frozen=True)
class Phrases:
    """How a family's wordings talk about a class `x` (its label name) and about the task.

    Attributes:
        in_: after "the text is": "in Polish" / "a list of person names".
        pl: a plural noun phrase for the inputs: "texts in Polish" / "lists of person names".
        noun: a short noun phrase: "Polish text" / "person names".
        question: a question asking for the class, without its question mark.
        topic: what the class is about ("language"), after "the".
    """

    in_: str
    pl: str
    noun: str
    question: str
    topic: str


FAMILIES: dict[str, Phrases] = {
    "lang": Phrases("in {x}", "texts in {x}", "{x} text", "Which language is this text written in", "language"),
    "entity": Phrases("a list of {x}", "lists of {x}", "{x}", "What kind of list is this", "kind of entries"),
    "locale": Phrases("a list of {x}", "lists of {x}", "{x}", "Where do these names come from", "origin"),
}


@dataclass(frozen=True)
class Listed:
    """A wording for any number of labels: prefix + joiner.join(clause per class) + suffix.

    The clause uses {k} (label index), {x} (label name), {in_}, {pl}, {noun} (the family's `Phrases`); the prefix
    may use {question}, {topic} and {or} (the label names joined with "or", in the order the wording mentions them).

    Attributes:
        reverse: mention the classes in the opposite order to their labels (last label first).
        last: the clause for the class mentioned last, if it differs (e.g. "otherwise {k} ({noun})").
    """

    prefix: str
    clause: str
    joiner: str
    suffix: str = "."
    reverse: bool = False
    last: str | None = None

    def render(self, meanings: Sequence[str], phrases: Phrases) -> str:
        order = list(enumerate(meanings))[::-1] if self.reverse else list(enumerate(meanings))
        names = [x for _, x in order]
        either = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        parts = []
        for i, (k, x) in enumerate(order):
            clause = self.last if self.last is not None and i == len(order) - 1 else self.clause
            parts.append(clause.format(k=k, x=x, **_slots(phrases, x)))
        prefix = self.prefix.format(question=phrases.question, topic=phrases.topic, **{"or": either})
        return _capitalise(prefix + self.joiner.join(parts) + self.suffix)


@dataclass(frozen=True)
class Pair:
    """A whole-sentence wording for two labels: {x0}/{x1}, {in0}/{in1}, {pl0}/{pl1}, {noun0}/{noun1} are label 0's
    and label 1's phrases; the label indices are written out in the text."""

    text: str

    def render(self, meanings: Sequence[str], phrases: Phrases) -> str:
        fields = {f"{key.rstrip('_')}{k}": value for k, x in enumerate(meanings) for key, value in _slots(phrases, x).items()}
        return _capitalise(self.text.format(**fields, x0=meanings[0], x1=meanings[1]))


def _slots(phrases: Phrases, x: str) -> dict[str, str]:
    return {"in_": phrases.in_.format(x=x), "pl": phrases.pl.format(x=x), "noun": phrases.noun.format(x=x)}


def _capitalise(text: str) -> str:
    """Upper-case the first letter of every sentence."""
    text = re.sub(r"([.?!] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text[0].upper() + text[1:]


# Any number of labels. Each is a different way a person asks; those with reverse=True name the last label first.
GENERAL: tuple[Listed, ...] = (
    Listed("{question}: {or}? ", "answer {k} for {x}", ", "),
    Listed("", "the answer is {k} when the text is {in_}", "; "),
    Listed("Sort each text into one of these: ", "{noun} ({k})", ", "),
    Listed("", "{pl} get {k}", " and ", reverse=True),
    Listed("I have a pile of short snippets and I need a model that works out the {topic} of each one. ",
           "the label should be {k} whenever a snippet is {in_}", "; ", ". Thanks a lot!"),
    Listed("", "{x}: {k}", " / ", ""),
    Listed("", "mark {pl} as {k}", " and "),
    Listed("", "{k} = {pl}", ", "),
    Listed("Key: ", "{k} means {pl}", "; ", reverse=True),
    Listed("", "answer {k} if it's {in_}", " and ", reverse=True),
    Listed("Is it {or}? ", "reply {k} if it is {in_}", ", "),
    Listed("", "{noun} is class {k}", ", "),
    Listed("Map each input to a number: ", "{x} -> {k}", ", "),
    Listed("", "{pl} should come out as {k}", "; ", reverse=True),
    Listed("Hey, could you build me a classifier for this? ", "when the input is {in_} I want {k}", " and "),
    Listed("Detect the {topic}: ", "{x} means {k}", ", "),
    Listed("", "tag {pl} with {k}", " and "),
    Listed("Given an input text, return ", "{k} if it is {in_}", ", "),
    Listed("{or}? ", "for {x} say {k}", ", ", reverse=True),
    Listed("Output ", "{k} for {pl}", ", ", last="otherwise {k} ({noun})"),
    Listed("Categories: ", "category {k} is {pl}", "; "),
    Listed("So the data is a bunch of snippets and the only thing that matters is the {topic}. ",
           "if it's {in_} give it a {k}", " and ", reverse=True),
    Listed("Possible outputs: ", "{k} ({x})", ", "),
    Listed("", "{x} ({k})", " vs ", "", reverse=True),
    Listed("Classify {or}. ", "{k}: {x}", ", "),
    Listed("", "the answer is {k} for {pl}", "; ", reverse=True),
)

# Two labels only: whole sentences with the indices written out (several name label 1 first).
PAIRS: tuple[Pair, ...] = (
    Pair("If it's {in0} say 0; otherwise (it's {in1}) say 1."),
    Pair("If the text is {in1} the answer is 1; if not (it's {in0}) the answer is 0."),
    Pair("Is this text {in0}? Yes ({x0}) -> 0; no ({x1}) -> 1."),
    Pair("Binary task: 1 means {pl1}; 0 means {pl0}."),
    Pair("{x0} or {x1}? 0 if {x0}; 1 if {x1}."),
    Pair("Tell {pl1} (1) from {pl0} (0)."),
    Pair("I'd like a yes/no kind of classifier: output 1 when it looks like {noun1} and output 0 when it looks "
         "like {noun0}."),
)


def templates(task: TaskRecord) -> list[Listed | Pair]:
    """Every wording template that fits `task` (its family, its number of labels).

    Raises:
        ValueError: a task whose family has no wordings here.
    """
    _phrases(task)
    return [*GENERAL, *(PAIRS if len(task.labels) == 2 else ())]


def all_wordings(task: TaskRecord) -> list[str]:
    """`task`'s description rendered with every template that fits it (for checks; evaluation uses a few)."""
    phrases = _phrases(task)
    return [t.render(task.labels, phrases) for t in templates(task)]


def is_reversed(template: Listed | Pair) -> bool:
    """Whether `template` mentions label 1 before label 0."""
    if isinstance(template, Listed):
        return template.reverse
    return template.text.find("1}") < template.text.find("0}")


def wording_descriptions(task: TaskRecord, n: int = N_PER_TASK) -> list[str]:
    """The `n` wordings the heldout_wording split asks `task` with, chosen by a seed made from the task's name.

    One of them mentions the classes in the opposite order to their labels; all are distinct.

    Raises:
        ValueError: a task whose family has no wordings here, or `n` < 1.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    phrases = _phrases(task)
    fitting = templates(task)
    rng = random.Random(zlib.crc32(f"wording/{task.name}".encode()))
    backwards = [t for t in fitting if is_reversed(t)]
    first = backwards[rng.randrange(len(backwards))]
    rest = rng.sample([t for t in fitting if t is not first], min(n, len(fitting)) - 1)
    return [t.render(task.labels, phrases) for t in [first, *rest]]


def _phrases(task: TaskRecord) -> Phrases:
    if task.family not in FAMILIES:
        raise ValueError(f"task {task.name!r} is of family {task.family!r}, which has no hand-written wordings; "
                         f"families with wordings: {sorted(FAMILIES)}")
    return FAMILIES[task.family]
