"""`loragen demo --base-model smollm2`: task selection on the real generative suite, option handling, and the whole
demo code path (bank build, CVAE, generation, scoring, reuse) over a tiny random Llama in place of SmolLM2."""

from __future__ import annotations

import argparse

import pytest

from loragen.api.cli import main
from loragen.api.commands._demo_common import pick_heldout
from loragen.api.commands.demo import fill_defaults
from loragen.api.commands.demo_llm import related_cells, run_llm_demo
from loragen.bank.causal_lm import normalize
from loragen.bank.lora.peft_format import load_peft
from loragen.bank.store import Bank
from loragen.bank.tasks import GENERATIVE, get_provider
from tests.unit.bank._custom import tiny_chat_llama_dir

TINY_RECIPE = {"target_modules": ["q_proj", "v_proj"], "layers": [1], "r": 2, "cache_frozen_layers": True,
               "steps": 3, "min_steps": 2, "num_checkpoints": 1, "max_length": 96}


@pytest.fixture(scope="module")
def specs():
    return get_provider(GENERATIVE, seed=0).tasks()


def test_heldout_task_and_related_bank_on_the_real_suite(specs):
    target = pick_heldout(specs, None, preferred=lambda s: s.family == "date-name")
    assert target.split == "heldout" and target.family == "date-name"
    op, part = target.data_ref["op"], target.data_ref["part"]
    bank = related_cells(specs, target, 6)
    assert len(bank) == 6 and all(s.split == "train" and s.family == target.family for s in bank)
    assert target.name not in {s.name for s in bank}
    # both halves of the new combination are in the bank: the same op in another part, the same part in another op
    assert bank[0].data_ref["op"] == op and bank[0].data_ref["part"] != part
    assert bank[1].data_ref["part"] == part and bank[1].data_ref["op"] != op
    assert all(s.data_ref["op"] == op or s.data_ref["part"] == part for s in bank)
    assert related_cells(specs, target, 6) == bank  # deterministic
    named = pick_heldout(specs, "number-words/read/de")
    assert all(s.family == "number-words" for s in related_cells(specs, named, 40))


def _args(**given) -> argparse.Namespace:
    base = {"base_model": "minilm", "tasks": None, "epochs": None, "steps": None, "samples": None, "oracles": None,
            "threads": None}
    return argparse.Namespace(**{**base, **given})


def test_defaults_per_base_model_and_foreign_options_refused(capsys):
    minilm, smol = _args(), _args(base_model="smollm2", tasks=4)
    fill_defaults(minilm)
    fill_defaults(smol)
    assert (minilm.tasks, minilm.epochs, minilm.samples, minilm.threads, minilm.steps) == (16, 60, 8, 1, None)
    assert (smol.tasks, smol.steps, smol.threads, smol.epochs) == (4, 300, 2, None)
    assert main(["demo", "--base-model", "smollm2", "--epochs", "3"]) == 1
    assert "--epochs is for `loragen demo --base-model minilm`" in capsys.readouterr().err
    assert main(["demo", "--steps", "3"]) == 1
    assert "--steps is for `loragen demo --base-model smollm2`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--base-model", "gpt2"])
    assert "invalid choice" in capsys.readouterr().err


def test_demo_code_path_over_a_tiny_llama_then_reuse(tmp_path, capsys):
    llama = tiny_chat_llama_dir(tmp_path / "llama")
    home = tmp_path / "demo"
    kwargs = {"base_model": str(llama), "task": "date-name/month/pl", "n_tasks": 3, "steps": 4,
              "recipe": TINY_RECIPE, "test_examples": 3, "progress": False}
    result = run_llm_demo(home, **kwargs)
    out = capsys.readouterr().out
    assert "hypernetwork: training" in out and "oracle: training" in out
    assert result["heldout_task"] == "date-name/month/pl" and len(result["bank_tasks"]) == 3
    target = next(t for t in get_provider(GENERATIVE).tasks() if t.name == "date-name/month/pl")
    assert result["description"] == target.heldout_paraphrases[0]
    assert list(result["exact_match"]) == ["base", "base + description (system prompt)",
                                           "generated (cvae, demo bank)", "oracle (trained on the task)"]
    assert all(0.0 <= row["exact match"] <= 1.0 and row["log-likelihood"] < 0 for row in result["exact_match"].values())
    samples = result["samples"]
    assert len(samples) == 3 and all(set(s) == {"input", "reference", "generated"} for s in samples)
    # the samples are the scored test pairs, decoded as the scorer decodes them
    hits = sum(normalize(s["generated"]) == normalize(s["reference"]) for s in samples) / 3
    assert result["exact_match"]["generated (cvae, demo bank)"]["exact match"] == pytest.approx(hits)
    with Bank.open(home / "bank.duckdb") as bank:
        assert {t.name for t in bank.tasks()} == set(result["bank_tasks"])  # the held-out task never goes in
        assert {r.task for r in bank.adapters(kind="final")} == set(result["bank_tasks"])
    adapter = load_peft(result["adapter_dir"])
    assert adapter.base_model == result["base_model"] and set(adapter.lora_A) and adapter.metadata.get(
        "task", target.name) == target.name
    again = run_llm_demo(home, **kwargs)
    out = capsys.readouterr().out
    assert "hypernetwork: reusing" in out and "oracle: training" not in out
    assert again["exact_match"] == result["exact_match"]
