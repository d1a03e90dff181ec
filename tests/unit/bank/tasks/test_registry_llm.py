"""The generative suite is a provider like any other: tasks by name, data by dispatch on the task's data_ref."""

from __future__ import annotations

import pytest

from loragen.bank.errors import TaskDataError
from loragen.bank.tasks import GENERATIVE, get_provider, provider_name, task_data


def test_generative_suite_dispatches_through_the_registry():
    suite = get_provider(GENERATIVE)
    task = suite.tasks()[0]
    assert provider_name(task) == GENERATIVE and task.labels == ()
    data = task_data(task)
    assert data == suite.data(task) and all(isinstance(y, str) for _, y in data.train)
    assert not {x for x, _ in data.train} & {x for x, _ in data.test}


def test_another_providers_task_is_refused():
    minilm_task = get_provider("minilm-suite").tasks()[0]
    with pytest.raises(TaskDataError, match="smollm2-gen"):
        get_provider(GENERATIVE).data(minilm_task)
