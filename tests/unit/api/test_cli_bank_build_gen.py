"""`loragen bank build --provider smollm2-gen` through the real CLI, over a tiny Llama in place of SmolLM2
(`--base-model`): suite tasks stored with their final adapter, checkpoints and val scores; a rerun resumes."""

from __future__ import annotations

import json

import yaml

from loragen.api.cli import main
from loragen.bank.store import Bank
from loragen.bank.suite_llm.provider import SmolLM2Suite
from loragen.bank.train import TrainConfig, load_recipe
from tests.unit.bank._custom import tiny_chat_llama_dir

NAMES = ("date-name/month/es", "number-words/cardinal/en")


def test_the_suite_recipe_is_a_valid_cached_upper_layer_recipe():
    config = TrainConfig(**load_recipe(SmolLM2Suite.recipe))
    assert config.cache_frozen_layers and min(config.layers) > 0 and config.target_modules == ("q_proj", "v_proj")


def test_build_generative_suite_tasks_then_resume(tmp_path, capsys):
    llama = tiny_chat_llama_dir(tmp_path / "llama")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"target_modules": ["q_proj", "v_proj"], "layers": [1], "r": 2,
                                      "cache_frozen_layers": True, "min_steps": 2, "num_checkpoints": 1}))
    bank = str(tmp_path / "gen.duckdb")
    args = ["bank", "build", "--provider", "smollm2-gen", "--bank", bank, "--base-model", str(llama), "--config",
            str(recipe), "--steps", "3", "--no-progress"]
    for name in NAMES:
        args += ["--name", name]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["built"] == 2
    with Bank.open(bank) as b:
        finals = {r.task: r for r in b.adapters(kind="final")}
        assert set(finals) == set(NAMES) and {t.name for t in b.tasks()} == set(NAMES)
        metrics = finals[NAMES[0]].metrics
        assert metrics["steps"] == 3 and metrics["cached_below"] == 1 and "val_exact_match" in metrics
        assert len(b.adapters(task=NAMES[0], kind="checkpoint")) == 1
    assert main(args) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["skipped"] == 2
    assert main(["bank", "build", "--provider", "smollm2-gen", "--bank", bank, "--family", "lang"]) == 1
    assert "date-name" in capsys.readouterr().err
