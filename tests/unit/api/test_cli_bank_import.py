"""`loragen bank add|import` with a user's own adapters: descriptions from sidecars or a manifest, relative base
models resolved from the adapter directory, and adapters marked as a task's oracle."""

from __future__ import annotations

import json
import shutil

import pytest

from loragen.api.cli import main
from loragen.bank.lora import save_peft
from loragen.bank.store import Bank
from tests._models import random_adapter, tiny_llama
from tests.unit.bank._custom import shout, write_jsonl


@pytest.fixture
def layout(tmp_path, tiny_llama_dir):
    """<tmp>/models/llama and <tmp>/adapters/a{0,1,2}, whose configs name the base model as ../../models/llama."""
    shutil.copytree(tiny_llama_dir, tmp_path / "models" / "llama")
    model = tiny_llama()
    for i in range(3):
        adapter = random_adapter(model, ("q_proj", "v_proj"), seed=i, base_model="../../models/llama")
        save_peft(adapter, tmp_path / "adapters" / f"a{i}")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def _sidecar(path, **fields):
    (path / "loragen.json").write_text(json.dumps(fields))


def test_import_reads_sidecars_and_resolves_the_base_model_from_the_adapter_dir(layout, capsys, monkeypatch):
    for i in range(3):
        _sidecar(layout / "adapters" / f"a{i}", description=f"answers questions about topic {i}", task=f"t{i}",
                 paraphrases=[f"topic {i} questions"])
    monkeypatch.chdir(layout / "elsewhere")  # relative base model paths must not depend on the cwd
    bank = str(layout / "b.duckdb")
    assert main(["bank", "import", str(layout / "adapters"), "--bank", bank]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == [str(layout / "adapters" / f"a{i}") for i in range(3)]
    with Bank.open(bank) as b:
        records = {r.task: r for r in b.adapters()}
        assert records["t1"].description == "answers questions about topic 1"
        assert records["t1"].metadata["paraphrases"] == ["topic 1 questions"]
        assert {r.base_model for r in records.values()} == {str((layout / "models" / "llama").resolve())}
        assert b.search_text("topic 2 questions", k=1)[0].task == "t2"


def test_a_missing_description_names_the_dir_and_the_ways_to_give_one(layout, capsys):
    _sidecar(layout / "adapters" / "a0", description="described")
    bank = str(layout / "b.duckdb")
    assert main(["bank", "import", str(layout / "adapters"), "--bank", bank]) == 1
    err = capsys.readouterr().err
    assert f"adapter {layout / 'adapters' / 'a1'} has no description" in err and "a2 has no description" in err
    assert "--description" in err and "loragen.json" in err and "--manifest" in err
    with Bank.open(bank) as b:
        assert b.adapters() == []  # checked before anything is imported
    assert main(["bank", "add", str(layout / "adapters" / "a1"), "--description", "my adapter", "--bank", bank]) == 0
    assert len(capsys.readouterr().out.strip()) == 16


def test_description_flag_is_for_one_adapter(layout, capsys):
    assert main(["bank", "import", "--bank", str(layout / "b.db")]) == 2
    assert "give adapter directories, --manifest FILE, or both" in capsys.readouterr().err
    code = main(["bank", "import", str(layout / "adapters"), "--description", "x", "--bank", str(layout / "b.db")])
    assert code == 2 and "--description describes one adapter, but 3" in capsys.readouterr().err


def test_manifest_and_kind_final_make_a_users_adapter_its_tasks_oracle(layout, capsys):
    bank = str(layout / "b.duckdb")
    write_jsonl(layout / "shout.jsonl", shout(1))
    tasks = write_jsonl(layout / "tasks.jsonl", [{"name": "shout", "description": "the word in capitals",
                                                  "data": "shout.jsonl"}])
    assert main(["bank", "tasks", "import", str(tasks), "--bank", bank]) == 0
    manifest = write_jsonl(layout / "adapters.jsonl", [
        {"path": "adapters/a0", "description": "shouts the word", "task": "shout"},
        {"path": "adapters/a1", "task": "shout"},  # described by its task
    ])
    capsys.readouterr()
    assert main(["bank", "import", "--manifest", str(manifest), "--kind", "final", "--bank", bank]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    with Bank.open(bank) as b:
        finals = b.adapters(task="shout", kind="final")
        assert [r.description for r in finals] == ["shouts the word", "the word in capitals"]
    assert main(["bank", "train", "--bank", bank, "--no-progress"]) == 0  # its oracle is there: nothing to train
    assert "trained 0 task(s), skipped 1" in capsys.readouterr().out
    bad = write_jsonl(layout / "bad.jsonl", [{"path": "adapters/a2", "description": "d", "task": "nope"},
                                             {"path": "adapters/none", "description": "d"}, {"descr": 1}])
    assert main(["bank", "import", "--manifest", str(bad), "--kind", "final", "--bank", bank]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: {layout / 'adapters' / 'none'} is not a PEFT adapter directory" in err
    assert f"{bad}:3: unknown key 'descr'" in err
    assert main(["bank", "import", "--manifest", str(bad.parent / "ok.jsonl"), "--bank", bank]) == 1
    write_jsonl(layout / "one.jsonl", [{"path": "adapters/a2", "description": "d", "task": "nope"}])
    assert main(["bank", "import", "--manifest", str(layout / "one.jsonl"), "--kind", "final", "--bank", bank]) == 1
    assert "its task 'nope' is not in the bank" in capsys.readouterr().err


def test_base_model_flag_overrides_and_unresolvable_relative_paths_are_explained(layout, capsys):
    odd = layout / "adapters" / "odd"
    save_peft(random_adapter(tiny_llama(), ("q_proj",), base_model="models/llama"), odd)
    _sidecar(odd, description="an adapter whose config names a path that is not there")
    bank = str(layout / "b.duckdb")
    assert main(["bank", "add", str(odd), "--bank", bank]) == 1
    err = capsys.readouterr().err
    assert "unknown base model 'models/llama'" in err and "--base-model" in err
    assert main(["bank", "add", str(odd), "--base-model", str(layout / "models" / "llama"), "--bank", bank]) == 0
    adapter_id = capsys.readouterr().out.strip()
    with Bank.open(bank) as b:
        assert b.record(adapter_id).base_model == str((layout / "models" / "llama").resolve())
