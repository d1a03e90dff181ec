"""The CLI's and the service's `retrieve`: the nearest final or uploaded adapter for the request's base model; never a
generated one (every generation is stored) nor one of a held-out task."""

from __future__ import annotations

import pytest

from loragen.bank.retrieval import SERVICE_KINDS, RetrievalGenerator
from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.errors import NotFoundError
from loragen.bank.generator import GenerationRequest
from loragen.bank.records import TaskRecord
from tests._local_models import LLAMA_TARGETS
from tests._models import random_adapter, tiny_llama
from tests.unit.bank._bank_util import minilm_adapter

QUERY = "label 0 if the review is positive, label 1 if it is negative"


def test_nearest_final_or_uploaded_adapter_of_the_base_model(tiny_llama_dir, tmp_path):
    from loragen.bank.store import Bank

    llama = canonical_base_model_id(tiny_llama_dir)
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="held/out", description=QUERY, labels=("pos", "neg"), split="heldout"))
        ids = {
            "generated": bank.add(minilm_adapter(seed=1), description=QUERY, kind="generated"),
            "heldout": bank.add(minilm_adapter(seed=2), task="held/out", description=QUERY, kind="final"),
            "llama-upload": bank.add(random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(tiny_llama_dir)),
                                     description=QUERY, kind="uploaded"),
            "minilm-final": bank.add(minilm_adapter(seed=3), description="label 0 if positive, 1 if negative review",
                                     kind="final"),
            "far": bank.add(minilm_adapter(seed=4), description="is the text about volcanoes?", kind="final"),
        }
        bank.reindex()
        retrieval = RetrievalGenerator(bank, kinds=SERVICE_KINDS, match_base_model=True)
        [minilm] = retrieval.generate(GenerationRequest(description=QUERY, base_model=DEFAULT_BASE_MODEL))
        assert minilm.metadata["id"] == ids["minilm-final"]  # nearer generated and held-out adapters are skipped
        [mine] = retrieval.generate(GenerationRequest(description=QUERY, base_model=llama))
        assert mine.metadata["id"] == ids["llama-upload"] and mine.base_model == llama
        assert retrieval.nearest_base_model(QUERY) == llama  # the nearest candidate of any base model
        both = retrieval.generate(GenerationRequest(description=QUERY, base_model=DEFAULT_BASE_MODEL, n_samples=3))
        assert [a.metadata["id"] for a in both] == [ids["minilm-final"], ids["far"]]  # all there are
        with pytest.raises(NotFoundError, match="no final or uploaded adapter for base model"):
            retrieval.generate(GenerationRequest(description=QUERY, base_model=str(tmp_path / "other")))


def test_label_names_pick_the_task_that_names_them_in_that_order(tmp_path):
    """Twin tasks (the same classes in the other label order) have nearly the same description embedding; with label
    names the twin naming them in the request's order wins, and one naming them in another order (its labels
    inverted: known wrong) comes after any other task."""
    from loragen.bank.store import Bank

    query = "Texts in German get 1 and texts in Dutch get 0."
    tasks = {"lang/de-vs-nl": (("German", "Dutch"), query),  # nearest by description, labels inverted
             "lang/nl-vs-fr": (("Dutch", "French"), "Texts in French get 1 and texts in Dutch get 0."),
             "lang/nl-vs-de": (("Dutch", "German"), "Which is it? 0 = Dutch, 1 = German."),
             "lang/es-vs-it": (("Spanish", "Italian"), "Which is it? 0 = Spanish, 1 = Italian.")}
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        ids = {}
        for i, (name, (labels, description)) in enumerate(tasks.items()):
            bank.add_task(TaskRecord(name=name, description=description, labels=labels))
            ids[name] = bank.add(minilm_adapter(seed=i), task=name, description=description, kind="final")
        bank.reindex()
        retrieval = RetrievalGenerator(bank)
        order = [h.task for h in retrieval.candidates(query, 4)]
        assert order[0] == "lang/de-vs-nl" and order.index("lang/nl-vs-fr") < order.index("lang/nl-vs-de"), order

        def top(labels, n=1, exclude=()):
            request = GenerationRequest(query, labels=labels, n_samples=n, exclude_tasks=frozenset(exclude))
            return [a.metadata["task"] for a in retrieval.generate(request)]

        assert top(None) == ["lang/de-vs-nl"]  # no label names: the nearest, whatever its order
        assert top(("Dutch", "German")) == ["lang/nl-vs-de"]
        assert top(("german", "dutch")) == ["lang/de-vs-nl"]
        # without a task in the request's order, another task comes before the inverted twin
        assert top(("Dutch", "German"), n=2, exclude={"lang/nl-vs-de"})[0] == "lang/nl-vs-fr"
        assert top(("Dutch", "German"), n=4)[-1] == "lang/de-vs-nl"


def test_without_label_names_the_description_slots_give_the_order(tmp_path):
    from loragen.bank.store import Bank

    query = "label 0 if the text is in Dutch, label 1 if the text is in German"
    twin = "label 0 if the text is in German, label 1 if the text is in Dutch"
    tasks = {"lang/de-vs-nl": (("German", "Dutch"), twin),
             "lang/nl-vs-de": (("Dutch", "German"), "Which is it? 0 = Dutch, 1 = German.")}
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        for i, (name, (labels, description)) in enumerate(tasks.items()):
            bank.add_task(TaskRecord(name=name, description=description, labels=labels))
            bank.add(minilm_adapter(seed=i), task=name, description=description, kind="final")
        bank.reindex()
        retrieval = RetrievalGenerator(bank)
        assert retrieval.candidates(query, 1)[0].task == "lang/de-vs-nl"  # nearest by embedding: the inverted twin
        assert retrieval.generate(GenerationRequest(query))[0].metadata["task"] == "lang/nl-vs-de"
        free = "is the text Dutch or German?"  # no label slots: the nearest, as before
        assert retrieval.generate(GenerationRequest(free))[0].metadata["task"] == retrieval.candidates(free, 1)[0].task


def test_labelled_examples_pick_the_adapter_that_gets_most_of_them_right(tmp_path):
    """With a judge (the real MiniLM classifier, `api.probe.example_judge`), the nearest adapters are ranked by how
    many of the request's examples they get right; the nearest keeps its place on a tie, and a request without
    examples (or a retrieval without a judge) is not judged at all."""
    from loragen.api.probe import example_judge
    from loragen.bank.store import Bank
    from loragen.bank.train.classifier import PrototypeClassifier

    classifier = PrototypeClassifier()
    examples = (("dzień dobry, jak się masz", 0), ("dobrý den, jak se máš", 1), ("to jest mój dom", 0),
                ("to je můj dům", 1), ("kot śpi na kanapie", 0), ("kočka spí na gauči", 1), ("idę do sklepu", 0),
                ("jdu do obchodu", 1))
    judge = example_judge(classifier=classifier)
    calls = []

    def counting(adapter, shown, k):
        calls.append(adapter.metadata["task"])
        return judge(adapter, shown, k)

    with Bank.open(tmp_path / "bank.duckdb") as bank:
        adapters = {f"t/{i}": minilm_adapter(seed=seed, scale=2.0, layers=tuple(range(6)))
                    for i, seed in enumerate((1, 0, 2, 3))}
        for name, adapter in adapters.items():
            bank.add_task(TaskRecord(name=name, description=f"{QUERY} ({name})", labels=("pos", "neg")))
            bank.add(adapter, task=name, description=f"{QUERY} ({name})", kind="final")
        bank.reindex()
        correct = {name: judge(a, examples, 2) for name, a in adapters.items()}
        nearest = [h.task for h in RetrievalGenerator(bank).candidates(QUERY, 4)]
        best = max(nearest, key=lambda t: (correct[t], -nearest.index(t)))  # most right, the nearer on a tie
        assert best != nearest[0], (correct, nearest)  # else the test could not tell judging from not judging
        retrieval = RetrievalGenerator(bank, judge=counting)
        [picked] = retrieval.generate(GenerationRequest(QUERY, examples=examples))
        assert picked.metadata["task"] == best and sorted(calls) == sorted(nearest)
        calls.clear()
        assert retrieval.generate(GenerationRequest(QUERY))[0].metadata["task"] == nearest[0] and not calls
        assert RetrievalGenerator(bank).generate(GenerationRequest(QUERY, examples=examples))[0].metadata["task"] \
            == nearest[0]
    assert len(set(correct.values())) > 1, correct  # the four random adapters differ on the examples


def test_generation_examples_reach_the_judge_and_pick_the_adapter(tiny_llama_dir, tmp_path):
    """(input, output) examples of a generation task are judged too (a causal LM's judge counts exact matches,
    tests/unit/api/test_probe_correct.py): the candidate with the most right comes first, not the nearest."""
    from loragen.bank.store import Bank

    query = "write the word backwards"
    pairs = (("abc", "cba"), ("hello", "olleh"))
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        for i in range(4):
            name = f"g/{i}"
            bank.add_task(TaskRecord(name=name, description=f"{query} ({name})", labels=()))
            bank.add(random_adapter(tiny_llama(), LLAMA_TARGETS, seed=i, base_model=str(tiny_llama_dir)), task=name,
                     description=f"{query} ({name})", kind="final")
        bank.reindex()
        nearest = [h.task for h in RetrievalGenerator(bank).candidates(query, 4)]
        seen = []

        def judge(adapter, shown, k):  # the farthest candidate gets both right
            seen.append(shown)
            return 2 if adapter.metadata["task"] == nearest[-1] else 0

        request = GenerationRequest(query, examples=pairs)
        assert request.generation_examples
        [picked] = RetrievalGenerator(bank, judge=judge).generate(request)
        assert picked.metadata["task"] == nearest[-1] != nearest[0]
        assert seen == [pairs] * 4
