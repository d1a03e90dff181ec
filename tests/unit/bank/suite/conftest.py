"""Suite fixtures: one MiniLM classifier and one small trained adapter per session (CPU, fixed seeds)."""

from __future__ import annotations

from functools import partial

import pytest

from loragen.bank.device import torch_threads
from loragen.bank.suite import SuiteClassifier, load_suite, task_data
from loragen.bank.train import TrainConfig, train_task_adapter

TINY = TrainConfig(steps=6, min_steps=4, num_checkpoints=2)


one_thread = partial(torch_threads, 1)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def suite():
    return load_suite(0)


@pytest.fixture(scope="session")
def classifier():
    return SuiteClassifier()


@pytest.fixture(scope="session")
def easy_task(suite):
    return next(t for t in suite if t.name == "entity/person-vs-country")


@pytest.fixture(scope="session")
def easy_data(easy_task):
    return task_data(easy_task, n_train=64, n_val=8, n_test=32)


@pytest.fixture(scope="session")
def trained(easy_task, easy_data, classifier):
    with one_thread():
        return train_task_adapter(easy_task, TINY, classifier, easy_data)
