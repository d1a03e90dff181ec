"""`GenerationRequest` examples: (text, label index) pairs of a classification task or (input, output) string
pairs of a generation task, never a mix; everything wrong is said in one error."""

from __future__ import annotations

import pytest

from loragen.bank.errors import ConfigError
from loragen.bank.generator import GenerationRequest


def test_labelled_examples_keep_their_label_indices():
    request = GenerationRequest("label 0 if Polish, label 1 if Czech", examples=(("Dzień dobry", 0), ("Ahoj", 1)))
    assert request.examples == (("Dzień dobry", 0), ("Ahoj", 1))
    assert not request.generation_examples and request.num_labels == 2


def test_input_output_pairs_are_generation_examples():
    request = GenerationRequest("Turn 2024-03-05 into March 5, 2024.",
                                examples=[("2024-03-05", "March 5, 2024"), ("1999-12-31", "December 31, 1999")])
    assert request.generation_examples and request.examples[1] == ("1999-12-31", "December 31, 1999")
    assert request.num_labels == 2


@pytest.mark.parametrize("examples, message", [
    ((("a", 0), ("b", "B")), "all (text, label index) pairs"),
    ((("a", True),), "all (text, label index) pairs"),
    ((("a",),), "all (text, label index) pairs"),
    ((("a", 0), ("b", 5)), "example labels must be in [0, 1]"),
])
def test_bad_examples_are_refused_with_what_to_give(examples, message):
    labels = ("yes", "no") if "must be in" in message else None
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        GenerationRequest("some task", labels=labels, examples=examples)


def test_label_names_do_not_go_with_generation_examples():
    with pytest.raises(ConfigError, match="generation task has no labels"):
        GenerationRequest("Reverse the word.", labels=("a", "b"), examples=(("abc", "cba"),))
