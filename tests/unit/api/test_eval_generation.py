"""`loragen eval` on generation tasks: a tiny random Llama bank of 3 SmolLM2-suite tasks (2 in-bank, 1 held out)
built by the real `bank build --provider smollm2-gen` CLI, scored by the harness with exact match and log-likelihood,
with the base+description row (the description as the system message) and the causal multi-task LoRA."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from loragen.api.cli import main
from loragen.bank.causal_lm import prompt_ids
from loragen.bank.evaluate import evaluate
from loragen.bank.evaluate.generation import GenerationScorer, generation_multitask, task_kind, token_calibration
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora.adapter import LoraAdapter
from loragen.bank.store import Bank
from loragen.bank.tasks.sources import BankSource
from loragen.bank.train import CausalLM, TrainConfig
from tests._models import tiny_tokenizer
from tests.unit.bank._custom import tiny_chat_llama_dir

NAMES = ("date-name/month/es", "date-name/month/fr", "date-name/month/pl")  # pl is a held-out task
ROWS = {"base", "base+description", "oracle", "mean", "multitask", "retrieval", "lookup", "lookup+8examples",
        "lookup+random", "lookup+othertask", "retrieval+random", "retrieval+othertask"}
N = 4  # test pairs per task


class _Lookup:
    """Returns the final adapter of the bank task whose wording is the request's (else the first final adapter):
    a generator that reads its description, so the random-description control must differ from it."""

    name = "lookup"

    def __init__(self, bank) -> None:
        self.bank, self.requests = bank, []
        self.finals = {r.task: r.id for r in bank.adapters(kind="final")}
        self.by_description = {w: t.name for t in bank.tasks() for w in (t.description, *t.heldout_paraphrases)}

    def generate(self, request: GenerationRequest) -> list[LoraAdapter]:
        self.requests.append(request)
        task = self.by_description.get(request.description, NAMES[0])
        return [self.bank.get(self.finals[task])]


@pytest.fixture(scope="module")
def gen_bank(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen-eval")
    llama = tiny_chat_llama_dir(tmp / "llama")
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"target_modules": ["q_proj", "v_proj"], "layers": [1], "r": 2,
                                      "cache_frozen_layers": True, "min_steps": 2, "num_checkpoints": 1}))
    bank = tmp / "gen.duckdb"
    args = ["bank", "build", "--provider", "smollm2-gen", "--bank", str(bank), "--base-model", str(llama),
            "--config", str(recipe), "--steps", "3", "--no-progress"]
    for name in NAMES:
        args += ["--name", name]
    assert main(args) == 0
    return bank, llama


def test_the_system_message_changes_the_prompt_ids_and_none_keeps_them():
    tok = tiny_tokenizer()
    plain = prompt_ids(tok, "3 May")
    assert prompt_ids(tok, "3 May", system="") == plain == prompt_ids(tok, "3 May", system=None)
    system = "Name the month in Spanish."
    described = prompt_ids(tok, "3 May", system=system)
    inserted = tok(system, add_special_tokens=False)["input_ids"]
    # the same prompt with the description's ids as the system message's content, nothing else changed
    assert any(described == plain[:k] + inserted + plain[k:] for k in range(len(plain)))


def test_harness_scores_generation_tasks_per_split_and_row(gen_bank, tmp_path):
    path, llama = gen_bank
    lm = CausalLM(llama)
    with Bank.open(path) as bank:
        lookup = _Lookup(bank)
        report = evaluate(bank, {"lookup": lookup}, lm=lm, max_examples=N, progress=False,
                          multitask_config=TrainConfig(steps=2, min_steps=2, num_checkpoints=0),
                          conditions=("description", "labels", "examples"))
        tasks = {t.name: t for t in bank.tasks()}
        finals = {r.task: r for r in bank.adapters(kind="final")}
        oracle = bank.get(finals[NAMES[2]].id)
        pairs = BankSource(bank).data(tasks[NAMES[2]]).test[:N]
        train = {t: set(BankSource(bank).data(tasks[t]).train) for t in NAMES}
    assert task_kind(list(tasks.values())) == "generation"
    assert report.config["metric"] == "exact_match" and report.config["base_model"] == finals[NAMES[0]].base_model
    assert report.config["tasks_per_split"] == {"in_bank": 2, "heldout_task": 1, "heldout_paraphrase": 2}
    for split, per_method in report.summary.items():
        assert set(per_method) == ROWS, split  # the labels condition is left out for generation tasks
        for method, stats in per_method.items():
            assert 0.0 <= stats["exact_match"] <= 1.0 and stats["loglik"] < 0.0 and "accuracy" not in stats, method
    # the oracle row is CausalLM.scores of the oracle on the task's test pairs
    (row,) = [r for r in report.rows if r["split"] == "heldout_task" and r["method"] == "oracle"]
    assert {k: row[k] for k in ("exact_match", "loglik")} == lm.scores(pairs, oracle)
    # base+description prompts the base model with the description as the system message: other scores than base
    for split in report.summary:
        described, base = report.summary[split]["base+description"], report.summary[split]["base"]
        assert described["loglik"] != base["loglik"]
    base_row = next(r for r in report.rows if r["method"] == "base" and r["task"] == NAMES[2])
    assert {k: base_row[k] for k in ("exact_match", "loglik")} == lm.scores(pairs, None)
    # the generators are asked for the bank's causal LM, with the description alone or with 8 (input, output)
    # pairs of the task's training split (never label names)
    assert lookup.requests and all(r.base_model == finals[NAMES[0]].base_model and r.labels is None
                                   for r in lookup.requests)
    shots = [r for r in lookup.requests if r.examples]
    assert shots and len(shots) < len(lookup.requests)
    assert all(r.generation_examples and len(r.examples) == 8 for r in shots)
    assert all(any(set(r.examples) <= pool for pool in train.values()) for r in shots)
    in_bank = report.summary["in_bank"]
    assert in_bank["lookup"] == {**in_bank["oracle"], "aligned_minus_random": in_bank["lookup"]["aligned_minus_random"]}
    assert "em" in report.table().splitlines()[0] and "base+description" in report.table()
    saved = json.loads(report.save_json(tmp_path / "eval.json").read_text())
    assert saved["summary"]["in_bank"]["oracle"]["normalised_gain"] in (1.0, None)
    assert report.plot(tmp_path / "eval.png").read_bytes()[:4] == b"\x89PNG"


def test_the_generation_multitask_lora_has_the_oracles_shape_and_learns(gen_bank):
    path, llama = gen_bank
    lm = CausalLM(llama)
    with Bank.open(path) as bank:
        in_bank = [t for t in bank.tasks() if t.split == "train"]
        oracle = bank.get(next(r.id for r in bank.adapters(kind="final")))
        data = BankSource(bank).data
        adapter = generation_multitask(in_bank, data, lm, oracle, TrainConfig(steps=2, min_steps=2,
                                                                                num_checkpoints=0))
        pairs = data(in_bank[0]).test[:N]
    assert adapter.modules == oracle.modules and adapter.r == oracle.r
    assert adapter.metadata["task"] == "multitask"
    scorer = GenerationScorer(lm, data, N)
    assert scorer(in_bank[0], adapter) != scorer(in_bank[0], None)
    with pytest.raises(ValueError, match="base model only"):
        scorer(in_bank[0], adapter, "a description")
    assert lm.scores(pairs, adapter) == scorer(in_bank[0], adapter)


def test_cli_eval_on_a_generation_bank(gen_bank, tmp_path, capsys):
    path, _ = gen_bank
    out = tmp_path / "eval.json"
    assert main(["eval", "--bank", str(path), "--max-examples", "2", "--multitask-steps", "2", "--json", str(out),
                 "--plot", str(tmp_path / "eval.png"), "--split", "in_bank", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "base+description" in printed and "in_bank em" in printed
    summary = json.loads(out.read_text())["summary"]["in_bank"]
    assert {"base", "base+description", "oracle", "mean", "multitask", "retrieval"} <= set(summary)
    assert all({"exact_match", "loglik"} <= set(stats) for stats in summary.values())


def test_cli_eval_scores_a_trained_cvae_on_generation_tasks(gen_bank, tmp_path, capsys):
    """A real generator through the generator interface: requests for the bank's causal LM, description only,
    with the random-description control."""
    path, _ = gen_bank
    bank = str(path)
    assert main(["train", "hypernet", "--bank", bank, "-o", str(tmp_path / "cvae"), "--max-steps", "4",
                 "--accelerator", "cpu", "--devices", "1", "--no-progress-bar"]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", "--bank", bank, "--max-examples", "2", "--split", "heldout_task", "--baseline", "base",
                 "--baseline", "oracle", "--method", f"cvae={tmp_path / 'cvae'}", "--control", "random", "--json",
                 str(out), "--plot", str(tmp_path / "eval.png"), "--condition", "description", "--condition",
                 "examples", "--predictive-samples", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads(out.read_text())
    summary = saved["summary"]["heldout_task"]
    assert set(summary) == {"base", "oracle", "cvae", "cvae+random"}
    # the CVAE has no channel for (input, output) examples: the row is left out with its reason, not faked
    assert "(input, output) pairs" in saved["config"]["refused"]["cvae+8examples"]
    assert {"exact_match", "loglik", "aligned_minus_random"} <= set(summary["cvae"])

    # per-token calibration: every scored row but the controls, pooled over the same reference tokens
    assert saved["config"]["predictive_samples"] == 3 and "token ECE" in printed
    n_tokens = {m: summary[m].get("n_tokens") for m in summary}
    assert n_tokens["base"] == n_tokens["oracle"] == n_tokens["cvae"] > 0 and n_tokens["cvae+random"] is None
    for m in ("base", "oracle", "cvae"):
        assert 0.0 <= summary[m]["token_ece"] <= 1.0 and summary[m]["token_nll"] > 0.0
        assert 0.0 <= summary[m]["token_accuracy"] <= 1.0 and 0.0 < summary[m]["token_confidence"] <= 1.0


def test_the_predictive_averages_the_adapters_distributions_and_matches_the_loglik(gen_bank):
    """`CausalLM.predictive` over several adapters is the mean of each one's next-token distribution; over one, its
    reference-token log-probabilities are the ones `scores` averages into "loglik"."""
    path, llama = gen_bank
    lm = CausalLM(llama)
    with Bank.open(path) as bank:
        task = next(t for t in bank.tasks() if t.name == NAMES[0])
        pair = BankSource(bank).data(task).test[:1]
        a, b = (bank.get(r.id) for r in bank.adapters(kind="final") if r.task in NAMES[:2])
    pa, targets = lm.predictive(pair, [a])
    pb, _ = lm.predictive(pair, [b])
    both, same_targets = lm.predictive(pair, [a, b])
    assert torch.equal(targets, same_targets) and pa.shape[0] == targets.shape[0] > 0
    assert torch.allclose(both, (pa + pb) / 2, atol=1e-6) and not torch.allclose(pa, pb)
    assert torch.allclose(pa.sum(-1), torch.ones(len(targets)), atol=1e-4)
    loglik = lm.scores(pair, a)["loglik"]
    assert pa.gather(-1, targets[:, None]).log().mean().item() == pytest.approx(loglik, abs=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        lm.predictive(pair, [])


def test_token_calibration_pools_the_tokens_of_every_request():
    confident_right = {"confidence": torch.tensor([0.9, 0.9]), "correct": torch.tensor([1.0, 1.0]),
                       "logp": torch.log(torch.tensor([0.9, 0.9]))}
    confident_wrong = {"confidence": torch.tensor([0.9, 0.9]), "correct": torch.tensor([0.0, 0.0]),
                       "logp": torch.log(torch.tensor([0.05, 0.05]))}
    assert token_calibration([confident_right])["token_ece"] == pytest.approx(0.1)
    pooled = token_calibration([confident_right, confident_wrong])
    assert pooled["token_ece"] == pytest.approx(0.4) and pooled["n_tokens"] == 4  # one bin: |0.5 - 0.9|
    assert pooled["token_accuracy"] == 0.5 and pooled["token_confidence"] == pytest.approx(0.9)
    assert pooled["token_nll"] == pytest.approx(-(2 * math.log(0.9) + 2 * math.log(0.05)) / 4)
