"""Description parsing shared by both generators: clauses to label slots, label indices."""

import pytest

from loragen.bank.describe import (
    OTHER_ORDER,
    SAME_ORDER,
    UNKNOWN_ORDER,
    described_order,
    label_indices,
    label_order,
    segment_description,
)

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


def test_every_suite_wording_names_each_of_its_labels_once():
    """The suite's parse is unchanged by the stricter index rules: every wording, training or held out, gives one
    slot per label."""
    from loragen.bank.suite.tasks import load_suite

    for task in load_suite(0):
        for text in (task.description, *task.paraphrases, *task.heldout_paraphrases):
            assert set(segment_description(text, 8)) == set(range(len(task.labels))), text


@pytest.mark.parametrize("text", [
    "summarise legal text in 3 sentences",
    "Answer 3 questions about the text.",
    "Translate to French in 2 sentences. Keep 1 paragraph.",
    "Pick the 2 best headlines, then give 5 keywords",
    "Rewrite the input in upper case.",
])
def test_a_bare_number_in_running_text_is_not_a_label_index(text):
    assert label_indices(text) == [] and segment_description(text, 8) == {}


def test_label_indices_need_a_label_form():
    text = "Return 1 if the review is positive, 0 otherwise"
    assert label_indices(text) == [1, 0] and segment_description(text, 8) == {1: "review positive"}
    assert segment_description("Is the word about the sky (0) or the ground (1)?", 8) == {0: "word about sky",
                                                                                          1: "ground"}
    assert segment_description("Answer one when the review is angry, 0 otherwise", 8) == {1: "review angry"}
    assert label_indices("category 2 covers sport; 3 apples") == [2]


@pytest.mark.parametrize(("description", "labels", "order"), [
    ("label 0 if the sentence is Polish, label 1 if it is Czech", ("Polish", "Czech"), SAME_ORDER),
    ("label 0 if the sentence is Polish, label 1 if it is Czech", ("czech", "POLISH"), OTHER_ORDER),
    ("Dutch or German? 0 if Dutch; 1 if German.", ("German", "Dutch"), OTHER_ORDER),
    ("Which is it? 0 = Russian, 1 = French.", ("Russian", "French"), SAME_ORDER),
    ("label 0 if the sentence is Polish, label 1 if it is Czech", ("Polish", "Slovak"), UNKNOWN_ORDER),
    ("is this sentence Polish or Czech?", ("Polish", "Czech"), UNKNOWN_ORDER),  # free text: no label slots
    ("label 0 if Polish or Czech, label 1 if English", ("Polish", "English"), SAME_ORDER),
    ("label 0 if Polish, label 1 if not Polish", ("Polish", "Czech"), UNKNOWN_ORDER),  # in both slots
    ("label 0 if Polish, label 1 if English", None, UNKNOWN_ORDER),
])
def test_described_order(description, labels, order):
    assert described_order(description, labels) == order


def test_label_order_compares_names_in_order():
    assert [label_order(t, ("Dutch", "German")) for t in (("dutch", " German"), ("German", "Dutch"),
                                                          ("Dutch", "French"), None, ())] == [0, 2, 1, 1, 1]
