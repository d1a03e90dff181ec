"""`loragen bank tasks import|list` and `loragen bank train` through the real CLI entry point: a user's own tasks
over their own tiny base models (a BERT encoder, a Llama causal LM), trained, resumed and refused."""

from __future__ import annotations

import json

import pytest

from loragen.api.cli import main
from loragen.bank.lora import load_peft
from loragen.bank.store import Bank
from tests.unit.bank._custom import fruit_vs_vehicles, shout, tiny_bert_dir, tiny_chat_llama_dir, write_jsonl


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"bert": tiny_bert_dir(root / "bert"), "llama": tiny_chat_llama_dir(root / "llama")}


def _manifest(root, models, cls_base: str | None = "bert", gen_base: str | None = None, n: int = 80):
    write_jsonl(root / "data" / "fruit.jsonl", fruit_vs_vehicles(n, named=True))
    write_jsonl(root / "data" / "shout.jsonl", shout(2))
    tasks = [{"name": "fruit", "description": "label 1 if the words name vehicles, 0 if they name fruit",
              "labels": ["fruit", "vehicle"], "data": "data/fruit.jsonl", "paraphrases": ["vehicles or fruit?"]},
             {"name": "shout", "description": "repeat the word in capital letters", "data": "data/shout.jsonl",
              "split": "heldout"}]
    for task, base in zip(tasks, (cls_base, gen_base)):
        if base:
            task["base_model"] = str(models[base])
    return write_jsonl(root / "tasks.jsonl", tasks)


def _list(bank, capsys) -> dict[str, dict]:
    assert main(["bank", "tasks", "list", "--json", "--bank", bank]) == 0
    return {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}


def test_import_then_list_then_reimport_replaces(tmp_path, models, capsys):
    bank = str(tmp_path / "b.duckdb")
    manifest = _manifest(tmp_path, models)
    assert main(["bank", "tasks", "import", str(manifest), "--bank", bank]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["fruit\tclassification\t64/8/8 train/val/test", "shout\tgeneration\t12/2/2 train/val/test"]
    rows = _list(bank, capsys)
    assert rows["fruit"] == {"name": "fruit", "kind": "classification", "split": "train",
                             "examples": {"train": 64, "val": 8, "test": 8}, "final_adapters": 0}
    assert rows["shout"]["kind"] == "generation" and rows["shout"]["split"] == "heldout"
    assert main(["bank", "tasks", "list", "--bank", bank]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "kind", "split", "train", "val", "test", "final"]
    assert table[1].split() == ["fruit", "classification", "train", "64", "8", "8", "0"]
    _manifest(tmp_path, models, n=20)  # fewer examples: re-import replaces them
    assert main(["bank", "tasks", "import", str(manifest), "--bank", bank]) == 0
    capsys.readouterr()
    assert _list(bank, capsys)["fruit"]["examples"] == {"train": 16, "val": 2, "test": 2}
    with Bank.open(bank) as b:
        task = b.get_task("fruit")
        assert task.data_ref == {"provider": "bank", "kind": "classification", "source": "tasks.jsonl",
                                 "base_model": str(models["bert"].resolve())}
        assert task.paraphrases == ("vehicles or fruit?",) and len(b.tasks()) == 2


def test_a_bad_manifest_is_one_line_naming_every_problem(tmp_path, capsys):
    write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 3}])
    manifest = write_jsonl(tmp_path / "t.jsonl", [{"name": "x", "description": "d", "labels": ["a", "b"],
                                                   "data": "d.jsonl", "extra": 1}])
    assert main(["bank", "tasks", "import", str(manifest), "--bank", str(tmp_path / "b.duckdb")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 problem(s)" in err
    assert f"{manifest}:1: unknown key 'extra'" in err and f"{tmp_path}/d.jsonl:1: label 3 out of range" in err


def test_train_classification_then_resume_then_force(tmp_path, models, capsys):
    bank = str(tmp_path / "b.duckdb")
    (tmp_path / "recipe.yaml").write_text("batch_size: 16\nnum_checkpoints: 2\n")
    assert main(["bank", "tasks", "import", str(_manifest(tmp_path, models)), "--bank", bank]) == 0
    args = ["bank", "train", "--bank", bank, "--tasks", "fruit", "--steps", "30", "--config",
            str(tmp_path / "recipe.yaml"), "--no-progress", "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("fruit: val accuracy ") and "30 steps" in out[0] and out[-1] == "trained 1 task(s)"
    with Bank.open(bank) as b:
        (final,) = b.adapters(task="fruit", kind="final")
        assert len(b.adapters(task="fruit", kind="checkpoint")) == 2
        assert final.metrics["val_accuracy"] >= 0.75 > 0.5  # learnt the rule: well above chance
        assert {"base_val_accuracy", "test_accuracy", "base_accuracy"} <= set(final.metrics)
        assert final.base_model == str(models["bert"].resolve())
        assert set(final.target_modules) == {"query", "key", "value"}
        before = {r.id for r in b.adapters()}
    assert _list(bank, capsys)["fruit"]["final_adapters"] == 1
    assert main(args) == 0  # resumable: the task has its final adapter
    assert capsys.readouterr().out.strip() == ("trained 0 task(s), skipped 1 that already have a final adapter "
                                               "(--force retrains)")
    with Bank.open(bank) as b:
        assert {r.id for r in b.adapters()} == before
    # Retraining with the same seeds for 10 steps reproduces the old step-10 checkpoint as the new final.
    assert main([*args, "--steps", "10", "--force"]) == 0
    capsys.readouterr()
    with Bank.open(bank) as b:
        (final,) = b.adapters(task="fruit", kind="final")  # the earlier trained ones were replaced
        assert final.metrics["steps"] == 10 and len(b.adapters(task="fruit", kind="checkpoint")) == 2


def test_train_generation_over_a_causal_lm(tmp_path, models, capsys):
    bank = str(tmp_path / "b.duckdb")
    assert main(["bank", "tasks", "import", str(_manifest(tmp_path, models)), "--bank", bank]) == 0
    (tmp_path / "recipe.yaml").write_text("batch_size: 8\nlr: 0.03\nmin_steps: 8\nnum_checkpoints: 1\n")
    capsys.readouterr()
    assert main(["bank", "train", "--bank", bank, "--tasks", "shout", "--base-model", str(models["llama"]),
                 "--steps", "8", "--config", str(tmp_path / "recipe.yaml"), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("shout: val exact_match ")
    with Bank.open(bank) as b:
        (final,) = b.adapters(task="shout", kind="final")
        assert final.metrics["val_loglik"] > final.metrics["base_val_loglik"]  # the val loss went down
        assert {"val_exact_match", "base_val_exact_match", "test_loglik"} <= set(final.metrics)
        assert final.base_model == str(models["llama"].resolve())
        adapter_id = final.id
    assert main(["bank", "export", adapter_id, str(tmp_path / "peft"), "--bank", bank]) == 0
    saved = load_peft(tmp_path / "peft")
    assert set(saved.target_modules) == {"q_proj", "v_proj"} and len(saved.modules) == 4
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(models["llama"].resolve())


@pytest.mark.parametrize("task,base,expected", [
    ("shout", "bert", "'shout' is a generation task (input/output pairs), but base model"),
    ("fruit", "llama", "'fruit' is a classification task, but base model"),
])
def test_the_wrong_kind_of_base_model_is_refused(tmp_path, models, capsys, task, base, expected):
    bank = str(tmp_path / "b.duckdb")
    assert main(["bank", "tasks", "import", str(_manifest(tmp_path, models, cls_base=None)), "--bank", bank]) == 0
    capsys.readouterr()
    assert main(["bank", "train", "--bank", bank, "--tasks", task, "--base-model", str(models[base]),
                 "--no-progress"]) == 1
    assert expected in capsys.readouterr().err
    with Bank.open(bank) as b:
        assert b.adapters() == []


def test_tasks_without_a_base_model_or_unknown_names_are_refused(tmp_path, models, capsys):
    bank = str(tmp_path / "b.duckdb")
    assert main(["bank", "tasks", "import", str(_manifest(tmp_path, models, cls_base=None)), "--bank", bank]) == 0
    capsys.readouterr()
    assert main(["bank", "train", "--bank", bank, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "task 'fruit' names no base model; pass --base-model" in err and "task 'shout' names no" in err
    assert main(["bank", "train", "--bank", bank, "--tasks", "nope"]) == 1
    assert "no task(s) ['nope'] in the bank" in capsys.readouterr().err
