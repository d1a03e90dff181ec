"""Description parsing shared by both generators: clauses to label slots, label indices."""

import pytest

from loragen.bank.describe import label_indices, segment_description

# The suite's training and held-out templates (bank/suite/tasks.py), and a few other wordings.
WORDINGS = [
    "Label 0 if the text is written in Polish, label 1 if the text is written in Czech.",
    "Classify the text: Polish is label 0; Czech is label 1.",
    "Which is it? 0 = Polish, 1 = Czech.",
    "Predict 0 for text written in Polish and predict 1 for text written in Czech.",
    "Output 0 when the input is written in Polish; output 1 when the input is written in Czech.",
    "Tell the classes apart: class 0 is text written in Polish, class 1 is text written in Czech.",
    "0: Polish; 1: Czech",
    "Is it Polish (0) or Czech (1)?",
]


@pytest.mark.parametrize("text", WORDINGS)
def test_segments_keep_the_label_to_class_mapping(text):
    assert segment_description(text, 8) == {0: "Polish", 1: "Czech"}


def test_segments_multiword_classes_and_three_labels():
    text = "Label 0 if the text is made of German person names, label 1 if made of city names, label 2 if colours."
    assert segment_description(text, 8) == {0: "German person names", 1: "city names", 2: "colours"}


def test_unstructured_description_gives_no_slots():
    assert segment_description("decide whether a sentence is Polish or Czech", 8) == {}


def test_indices_beyond_the_slot_count_and_ambiguous_clauses_are_not_slots():
    assert segment_description("label 5 is unused, label 0 if Polish, label 1 if Czech", 2) == {0: "Polish", 1: "Czech"}
    assert segment_description("0/1 means Polish, 1 for Czech", 8) == {1: "Czech"}


def test_label_indices_reads_digits_and_number_words_after_label():
    assert label_indices("class one is Polish, 2 is Czech, version 3.5") == [1, 2]
