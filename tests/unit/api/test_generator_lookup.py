"""`loragen generate` finds its generator and bank in one fixed order (named > yours at the default location > the
demo's), generates for the checkpoint's base model, refuses a conflicting --base-model, and scores the result on a
causal LM."""

from __future__ import annotations

import math
import re
import shutil

import pytest

from loragen.api.cli import main
from loragen.api.lookup import find_bank, find_checkpoint
from loragen.bank import paths
from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.errors import CheckpointError
from loragen.bank.lora import load_peft
from loragen.bank.records import TaskRecord
from tests._local_models import LLAMA_TARGETS
from tests._models import random_adapter, tiny_llama

DESCRIPTION = "label 0 if the text is written in Polish, label 1 if the text is written in German"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))


def _generate(tmp_path, *flags: str, name: str = "out") -> tuple[int, str]:
    return main(["generate", DESCRIPTION, "-o", str(tmp_path / name), "--no-score", *flags])


def _used(tmp_path, name: str = "out") -> str:
    return load_peft(tmp_path / name).metadata["checkpoint"]


def test_checkpoint_order_named_then_yours_then_the_demos(cvae_checkpoint, tmp_path, capsys):
    demo, default = paths.demo_home() / "hypernet", paths.checkpoint_dir("hypernet")
    with pytest.raises(CheckpointError, match="no hypernet checkpoint.*loragen train hypernet.*loragen demo"):
        find_checkpoint("cvae")
    assert _generate(tmp_path) == 1
    assert "no hypernet checkpoint" in capsys.readouterr().err

    shutil.copytree(cvae_checkpoint, demo)  # after `loragen demo`: plain `generate` works, and says whose it is
    assert _generate(tmp_path) == 0 and _used(tmp_path) == str(demo)
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "checkpoint" in line] == [
        f"using cvae checkpoint {demo} (the demo's; train your own to replace it)"]

    shutil.copytree(cvae_checkpoint, default)  # your own at the default location wins over the demo's, quietly
    assert _generate(tmp_path, name="mine") == 0 and _used(tmp_path, "mine") == str(default)
    assert "checkpoint" not in capsys.readouterr().err
    assert _generate(tmp_path, "-v", name="mine") == 0
    assert f"using cvae checkpoint {default} (the default location)" in capsys.readouterr().err

    named = shutil.copytree(cvae_checkpoint, tmp_path / "named")  # a named one wins over both
    assert _generate(tmp_path, "--checkpoint", str(named), name="named-out") == 0
    assert _used(tmp_path, "named-out") == str(named)
    assert find_checkpoint("cvae", tmp_path / "nowhere").path == tmp_path / "nowhere"  # named: never replaced
    assert _generate(tmp_path, "--checkpoint", str(tmp_path / "nowhere"), name="x") == 1
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_base_model_is_the_checkpoints_and_a_different_one_is_an_error(cvae_checkpoint, llama_dir, tmp_path, capsys):
    assert _generate(tmp_path, "--checkpoint", str(cvae_checkpoint)) == 0
    assert load_peft(tmp_path / "out").base_model == canonical_base_model_id(llama_dir)
    assert _generate(tmp_path, "--checkpoint", str(cvae_checkpoint), "--base-model", str(llama_dir), name="same") == 0
    assert _generate(tmp_path, "--checkpoint", str(cvae_checkpoint), "--base-model", "minilm", name="other") == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--base-model minilm" in line and "conflicts with checkpoint" in line and str(llama_dir) in line
    assert not (tmp_path / "other").exists()


def _bank_with(path, llama_dir, task: str, seed: int) -> None:
    """A bank with one generation task (examples stored in the bank) and one final tiny-Llama adapter for it."""
    from loragen.bank.store import Bank
    from loragen.bank.tasks import STORED

    with Bank.open(path) as bank:
        bank.add_task(TaskRecord(name=task, description=DESCRIPTION, labels=(), data_ref={"provider": STORED}))
        adapter = random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(llama_dir), seed=seed)
        bank.add(adapter, task=task, kind="final", source="test")
        bank.reindex()


def test_bank_order_named_then_yours_then_the_demos(llama_dir, tmp_path, capsys):
    def retrieved(name: str, *flags: str) -> str:
        assert main(["generate", DESCRIPTION, "--method", "retrieve", "-o", str(tmp_path / name), "--no-score",
                     *flags]) == 0
        return load_peft(tmp_path / name).metadata["task"]

    assert find_bank() is None
    assert main(["generate", DESCRIPTION, "--method", "retrieve", "-o", str(tmp_path / "x")]) == 1
    assert "no bank at" in capsys.readouterr().err
    _bank_with(paths.demo_home() / paths.BANK_FILE, llama_dir, "demo/task", seed=1)
    assert retrieved("a") == "demo/task"
    assert f"using bank {paths.demo_home() / paths.BANK_FILE} (the demo's" in capsys.readouterr().err
    _bank_with(paths.bank_path(), llama_dir, "my/task", seed=2)
    assert retrieved("b") == "my/task"
    _bank_with(tmp_path / "named.duckdb", llama_dir, "named/task", seed=3)
    assert retrieved("c", "--bank", str(tmp_path / "named.duckdb")) == "named/task"
    assert main(["generate", DESCRIPTION, "--method", "retrieve", "-o", str(tmp_path / "d"), "--bank",
                 str(tmp_path / "missing.duckdb")]) == 1
    assert "no such bank" in capsys.readouterr().err and not (tmp_path / "missing.duckdb").exists()


def _numbers(line: str) -> dict[str, float]:
    pairs = re.findall(r"(predictive entropy|mutual information|greedy-token probability) (-?[\d.]+|nan|inf)", line)
    return {k: float(v) for k, v in pairs}


def test_generate_scores_adapters_for_a_causal_lm(cvae_checkpoint, llama_dir, tmp_path, capsys):
    """A non-MiniLM base model gets a score: on the user's inputs, and without them on the stored inputs of the
    nearest bank task for that base model."""
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"input": "ab"}\n{"text": "cd"}\n')
    assert main(["generate", DESCRIPTION, "-o", str(tmp_path / "s"), "--checkpoint", str(cvae_checkpoint),
                 "--samples", "3", "--seed", "0", "--inputs", str(inputs)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("uncertainty:"))
    found = _numbers(line)
    assert set(found) == {"predictive entropy", "mutual information", "greedy-token probability"}, line
    assert all(math.isfinite(v) and v >= 0 for v in found.values()) and "3 adapter(s) on 2 inputs" in line

    from loragen.bank.store import Bank

    _bank_with(paths.bank_path(), llama_dir, "gen/echo", seed=4)
    with Bank.open(paths.bank_path()) as bank:
        bank.set_task_data("gen/echo", [("ab", "ab")], val=[("xy", "xy"), ("zw", "zw"), ("q", "q")])
    assert main(["generate", DESCRIPTION, "-o", str(tmp_path / "one"), "--checkpoint", str(cvae_checkpoint)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("uncertainty:"))
    assert "1 adapter(s) on 3 inputs" in line and "n/a (one adapter" in line
    assert math.isfinite(_numbers(line)["predictive entropy"])
    assert "nearest bank task: gen/echo" in out
