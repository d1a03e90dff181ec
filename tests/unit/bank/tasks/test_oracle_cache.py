"""The oracle-cache format: what the writer writes the readers read back (tasks, adapters, metrics), anywhere."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from loragen.bank.errors import TaskDataError
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import MemorySource, OracleCache, OracleCacheSource, TaskSource, task_dir
from tests.unit.bank._bank_util import minilm_adapter

TASKS = [
    TaskRecord("lang/pl-vs-cs", "label 0 if Polish, label 1 if Czech", ("Polish", "Czech"), ("0 = Polish, 1 = Czech",),
               family="lang", data_ref={"suite": "builtin", "sources": ["lang:pl", "lang:cs"], "seed": 0}),
    TaskRecord("lang/cs-vs-pl", "label 0 if Czech, label 1 if Polish", ("Czech", "Polish"), family="lang",
               split="heldout", data_ref={"suite": "builtin", "sources": ["lang:cs", "lang:pl"], "seed": 0}),
]


def _same(a, b) -> bool:
    return a.modules == b.modules and all(torch.equal(a.delta_weight(m), b.delta_weight(m)) for m in a.modules)


@pytest.fixture
def cache(tmp_path) -> OracleCache:
    """TASKS[0] trained (final + checkpoints at steps 10 and 3), TASKS[1] pending."""
    cache = OracleCache(tmp_path / "oracles")
    cache.write_index(TASKS, {})
    folder = cache.save_oracle(TASKS[0].name, minilm_adapter(0), [(10, minilm_adapter(2)), (3, minilm_adapter(1))])
    assert folder == task_dir(cache.root, TASKS[0].name) == cache.root / "lang__pl-vs-cs"
    metrics = {"status": "done", "test_accuracy": 0.9, "base_accuracy": 0.4, "steps": 12}
    cache.record(TASKS[0].name, metrics)
    cache.write_index(TASKS, {TASKS[0].name: metrics})
    return cache


def test_written_cache_reads_back_tasks_adapters_and_metrics(cache):
    assert cache.tasks() == [TASKS[0]]  # only trained tasks, records equal to the ones written
    assert cache.tasks(done_only=False) == TASKS
    assert cache.has_final(TASKS[0].name) and not cache.has_final(TASKS[1].name)
    assert _same(cache.final(TASKS[0].name), minilm_adapter(0)) and cache.final(TASKS[1].name) is None
    steps = cache.checkpoints(TASKS[0].name)
    assert [s for s, _ in steps] == [3, 10] and _same(steps[0][1], minilm_adapter(1))
    m = cache.metrics(TASKS[0].name)
    assert m["test_accuracy"] == 0.9 and m["status"] == "done" and "description" not in m
    assert cache.recorded() == {TASKS[0].name: m}
    rows = json.loads((cache.root / "tasks.json").read_text())
    assert [r["status"] for r in rows] == ["done", "pending"] and rows[0]["paraphrases"] == ["0 = Polish, 1 = Czech"]


def test_a_moved_cache_still_reads(cache, tmp_path):
    moved = OracleCache(shutil.move(cache.root, tmp_path / "elsewhere"))
    assert moved.tasks() == [TASKS[0]] and _same(moved.final(TASKS[0].name), minilm_adapter(0))


def test_without_an_index_adapters_and_results_still_read_but_tasks_need_it(cache):
    (cache.root / "tasks.json").unlink()
    assert _same(cache.final(TASKS[0].name), minilm_adapter(0))
    assert cache.metrics(TASKS[0].name)["base_accuracy"] == 0.4  # from results.jsonl
    with pytest.raises(TaskDataError, match="no tasks.json.*oracle cache"):
        cache.tasks()
    with pytest.raises(TaskDataError, match="no tasks.json"):
        OracleCacheSource(cache.root)


def test_oracle_cache_source_serves_finals_first_then_checkpoints_by_kind(cache):
    source = OracleCacheSource(cache.root)
    assert isinstance(source, TaskSource) and isinstance(MemorySource([], {}), TaskSource)
    assert source.tasks() == [TASKS[0]]
    kinds = [k for _, k in source.adapters(TASKS[0].name)]
    assert kinds == ["final", "checkpoint", "checkpoint"]
    [(final, kind)] = source.adapters(TASKS[0].name, kinds=("final",))
    assert kind == "final" and _same(final, minilm_adapter(0))
    assert [k for _, k in source.adapters(TASKS[0].name, kinds=("checkpoint",))] == ["checkpoint"] * 2
    assert source.adapters(TASKS[1].name) == []
    assert source.metrics(TASKS[0].name)["steps"] == 12
