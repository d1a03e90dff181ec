"""Provider dispatch: tasks reach their data through their own provider, by name, and never fall back to the suite."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loragen.bank import tasks as T
from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import registry
from loragen.bank.tasks.provider import TaskData

TEXTS = {0: ["un", "deux", "trois", "quatre", "cinq"], 1: ["one", "two", "three", "four", "five"]}


class CountingProvider:
    """A provider of one tiny two-label task whose data is built from its data_ref (the shape a manifest has)."""

    name = "counting"

    def __init__(self, size: int = 5) -> None:
        self.size = size

    def tasks(self) -> list[TaskRecord]:
        return [TaskRecord("count/fr-vs-en", "label 0 if French, label 1 if English", ("French", "English"),
                           data_ref={"provider": self.name, "size": self.size})]

    def data(self, task: TaskRecord) -> TaskData:
        if task.data_ref.get("provider") != self.name:
            raise TaskDataError(f"task {task.name!r} is not a counting task")
        n = int(task.data_ref["size"])
        train = [(t, y) for y in (0, 1) for t in TEXTS[y][:n]]
        return TaskData(train=train, val=[("six", 1)], test=[("sept", 0)])


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "counting", f"{__name__}:CountingProvider")
    monkeypatch.setattr(registry, "_instances", {})
    return T.get_provider("counting")


def test_a_registered_provider_serves_its_tasks_by_data_ref(counting):
    [task] = counting.tasks()
    assert T.provider_name(task) == "counting" and T.provider_for(task) is counting
    assert T.get_provider("counting") is counting  # one instance per name and options
    assert T.task_data(task).test == [("sept", 0)]
    few = T.few_shot_examples(task, n=4, seed=0)
    assert [y for _, y in few] == [0, 1, 0, 1] and all(t in TEXTS[y] for t, y in few)
    drawn = T.training_examples(task, 3, seed=1)
    assert len(drawn) == 3 and drawn == T.training_examples(task, 3, seed=1)
    assert not {t for t, _ in drawn} & {"six", "sept"}  # training split only
    assert len(T.training_examples(task, 50, seed=0)) == 10
    with pytest.raises(TaskDataError, match="'counting', which has no classifier"):
        T.classifier_for(task)


def test_few_shot_examples_say_when_a_label_is_short(counting):
    small = replace(counting.tasks()[0], data_ref={"provider": "counting", "size": 1})
    with pytest.raises(TaskDataError, match="count/fr-vs-en.*too few training examples"):
        T.few_shot_examples(small, n=4)


def test_a_task_without_a_provider_gets_no_examples_and_a_clear_error_never_the_suites():
    suite_task = T.get_provider(T.BUILTIN).tasks()[0]
    impostor = replace(suite_task, data_ref={})  # the suite's name and labels, but no data_ref
    assert T.provider_name(impostor) is None
    assert T.training_examples(impostor, 8, seed=0) == []
    with pytest.raises(TaskDataError, match=f"task {impostor.name!r} has no data.*names no task provider"):
        T.task_data(impostor)
    other_suite = replace(suite_task, data_ref={"suite": "test", "seed": 1})
    with pytest.raises(TaskDataError, match="names no task provider"):
        T.classifier_for(other_suite)


def test_an_unknown_provider_is_an_error_naming_the_task_and_the_known_ones():
    task = TaskRecord("x/y", "label 0 if x, label 1 if y", ("x", "y"), data_ref={"provider": "my-manifest"})
    for call in (T.task_data, lambda t: T.training_examples(t, 4, 0), T.provider_for):
        with pytest.raises(TaskDataError, match=r"'x/y' names task provider 'my-manifest'.*minilm-suite"):
            call(task)
    with pytest.raises(TaskDataError, match="unknown task provider 'nope'"):
        T.get_provider("nope")


def test_register_provider_checks_the_factory_and_never_rebinds_a_name(monkeypatch):
    monkeypatch.setattr(registry, "PROVIDERS", dict(registry.PROVIDERS))
    with pytest.raises(TaskDataError, match="module:callable"):
        T.register_provider("mine", "tests.unit.bank.tasks.test_registry.CountingProvider")
    T.register_provider("mine", f"{__name__}:CountingProvider")
    T.register_provider("mine", f"{__name__}:CountingProvider")  # the same factory again is fine
    with pytest.raises(TaskDataError, match="already registered"):
        T.register_provider(T.BUILTIN, f"{__name__}:CountingProvider")


def test_the_builtin_suite_is_a_classification_provider_owning_its_tasks():
    suite = T.get_provider(T.BUILTIN, seed=0)
    assert isinstance(suite, T.ClassificationProvider) and suite.name == T.BUILTIN
    tasks = suite.tasks()
    assert len(tasks) >= 300 and {T.provider_name(t) for t in tasks} == {T.BUILTIN}
    assert T.get_provider(T.BUILTIN, seed=1).tasks() != tasks  # options reach the provider
    assert not isinstance(T.get_provider(T.BUILTIN), CountingProvider)
    small = replace(tasks[0], data_ref={**tasks[0].data_ref, "n_train": 4, "n_val": 2, "n_test": 2})
    data = T.task_data(small)
    assert (len(data.train), len(data.val), len(data.test)) == (4, 2, 2) and data == suite.data(small)
