"""`train_abmll`: ABMLL trained end to end from a training source (real MiniLM, two suite tasks, a few steps)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loragen.bank.errors import TaskDataError
from loragen.bank.generator import GenerationRequest
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import BUILTIN, MemorySource, get_provider
from loragen.meta.checkpoint import load_checkpoint
from loragen.meta.config import MetaConfig
from loragen.meta.generate import ABMLLGenerator
from loragen.meta.train import train_abmll
from tests.unit.bank._bank_util import minilm_adapter

TINY = {"train": {"steps": 2, "tasks_per_batch": 2, "examples_per_task": 4, "warm_start_steps": 3, "log_every": 1}}


def _small(task: TaskRecord) -> TaskRecord:
    return replace(task, data_ref={**task.data_ref, "n_train": 8, "n_val": 4, "n_test": 4})


@pytest.fixture(scope="module")
def suite_tasks() -> list[TaskRecord]:
    tasks = get_provider(BUILTIN).tasks()
    return [_small(t) for t in tasks if t.split == "train"][:2] + [_small(next(t for t in tasks
                                                                               if t.split == "heldout"))]


def test_trains_on_the_sources_in_bank_tasks_warm_started_from_matching_adapters(suite_tasks, tmp_path):
    a, b, held = suite_tasks
    full = minilm_adapter(0, layers=tuple(range(6)), targets=("query", "key", "value"))  # the ABMLL layout
    other_rank = minilm_adapter(1, r=2, layers=tuple(range(6)), targets=("query", "key", "value"))
    source = MemorySource([a, b, held], {a.name: [(full, "final")], b.name: [(other_rank, "final")],
                                         held.name: [(full, "final")]})
    model, guide, history = train_abmll(source, MetaConfig.from_dict(TINY), tmp_path / "abmll", progress=False)
    assert len(history["elbo"]) == 2 and len(history["warm_start_mse"]) == 3
    _, _, config, meta = load_checkpoint(tmp_path / "abmll")
    assert meta["extra"]["tasks"] == [a.name, b.name]  # the held-out task is never trained on
    assert meta["extra"]["warm_start_tasks"] == 1  # the rank-2 adapter does not fit the layout
    assert config.train.steps == 2
    [adapter] = ABMLLGenerator.from_checkpoint(tmp_path / "abmll").generate(GenerationRequest(a.description))
    assert adapter.modules == full.modules and adapter.base_model == model.layout.base_model


def test_refuses_a_source_without_in_bank_tasks_or_with_several_providers(suite_tasks, tmp_path):
    _, _, held = suite_tasks
    with pytest.raises(TaskDataError, match=r"MemorySource\(1 tasks\) has no in-bank"):
        train_abmll(MemorySource([held], {}), MetaConfig.from_dict(TINY), tmp_path / "x", progress=False)
    mine = TaskRecord("mine/a-vs-b", "label 0 if a, label 1 if b", ("a", "b"), data_ref={"provider": "manifest"})
    with pytest.raises(TaskDataError, match="several task providers"):
        train_abmll(MemorySource([suite_tasks[0], mine], {}), MetaConfig.from_dict(TINY), tmp_path / "x",
                    progress=False)
    assert not (tmp_path / "x").exists()
