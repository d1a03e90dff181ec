"""ABMLL learns from a user's own bank with the likelihood its base model and tasks call for: the token
log-likelihood of the outputs on a tiny Llama (generation tasks), a prototype classifier over a tiny BERT
(classification tasks); it refuses a bank it cannot train on, and never falls back to the suite."""

from __future__ import annotations

import json

import pytest
import torch

from loragen.api.cli import main
from loragen.bank.base_model import canonical_base_model_id, load_base_model
from loragen.bank.errors import ConfigError
from loragen.bank.generator import GenerationRequest
from loragen.bank.store import Bank
from loragen.bank.tasks import BankSource
from loragen.meta.checkpoint import likelihood_spec
from loragen.meta.config import MetaConfig
from loragen.meta.generate import ABMLLGenerator
from loragen.meta.likelihood import CAUSAL_LM, CLASSIFIER, LikelihoodSpec, choose_kind
from loragen.meta.train import train_abmll
from tests._models import random_adapter
from tests.unit.meta._user_banks import (
    BERT_TARGETS,
    GENERATION,
    LLAMA_TARGETS,
    bert_dir,
    classification_bank,
    generation_bank,
    generation_data,
    llama_dir,
    train_oracle,
)

TINY = {"train": {"steps": 2, "tasks_per_batch": 2, "examples_per_task": 4, "warm_start_steps": 3, "log_every": 1}}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return llama_dir(tmp_path_factory.mktemp("user-llama"))


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bert_dir(tmp_path_factory.mktemp("user-bert"))


@pytest.fixture(scope="module")
def oracle(llama):
    """An adapter actually fitted on user/upper's training examples."""
    return train_oracle(llama, generation_data("user/upper", 12, 0))


@pytest.fixture(scope="module")
def generation_run(llama, oracle, tmp_path_factory):
    root = tmp_path_factory.mktemp("abmll-gen")
    with Bank.open(root / "bank.duckdb") as bank:
        generation_bank(bank, llama, adapters={"user/upper": oracle})
        model, guide, history = train_abmll(BankSource(bank), MetaConfig.from_dict(TINY), root / "ckpt",
                                            progress=False)
    return root, model, history


def test_generation_bank_trains_on_the_causal_lm_and_records_its_likelihood(generation_run, llama):
    root, model, history = generation_run
    meta = json.loads((root / "ckpt" / "config.json").read_text())
    assert meta["likelihood"] == {"kind": CAUSAL_LM, "base_model": str(llama.resolve()), "provider": None}
    assert meta["extra"]["tasks"] == sorted(GENERATION) and meta["extra"]["warm_start_tasks"] == 5
    assert len(history["elbo"]) == 2 and all(torch.isfinite(torch.tensor(history["elbo"])))
    gen = ABMLLGenerator.from_checkpoint(root / "ckpt")
    [adapter] = gen.generate(GenerationRequest("Translate the input into French.", base_model=str(llama)))
    named = dict(load_base_model(llama).named_modules())
    assert {m.rsplit(".", 1)[-1] for m in adapter.modules} == set(LLAMA_TARGETS)
    for m, a, b in adapter.items():
        assert (b.shape[0], a.shape[1]) == tuple(named[m].weight.shape)
    with pytest.raises(ConfigError, match="generation tasks.*drop --examples"):
        gen.generate(GenerationRequest("Translate the input.", examples=(("a", 0), ("b", 1)), base_model=str(llama)))


def test_generation_examples_refine_the_posterior_towards_their_outputs(generation_run, llama):
    """(input, output) pairs refine ABMLL's task posterior with the causal LM's likelihood: the refined mean
    explains those pairs better than the amortized guess from the description alone."""
    root, model, _ = generation_run
    gen = ABMLLGenerator.from_checkpoint(root / "ckpt")
    pairs = tuple(generation_data("user/upper", 8, 0))
    plain = gen.posterior(GenerationRequest("Rewrite the input.", base_model=str(llama), seed=0))
    shown = gen.posterior(GenerationRequest("Rewrite the input.", examples=pairs, base_model=str(llama), seed=0))
    assert shown.refined and not plain.refined and not torch.equal(shown.loc, plain.loc)
    inputs, outputs = [x for x, _ in pairs], [y for _, y in pairs]
    with torch.no_grad():
        before = float(gen.model.log_likelihood(plain.loc, inputs, outputs))
        after = float(gen.model.log_likelihood(shown.loc, inputs, outputs))
    assert after > before, (before, after)


def test_adapters_on_the_upper_blocks_only_give_abmll_their_blocks(llama, tmp_path):
    """Oracles that adapt only the upper blocks (the SmolLM2 recipe's `layers`): ABMLL's layout takes their blocks,
    warm-starts from every one of them, and generates adapters on those blocks only."""
    model = load_base_model(llama)
    base = canonical_base_model_id(llama)
    upper = {name: random_adapter(model, LLAMA_TARGETS, seed=i, base_model=base, layers=(1,))
             for i, name in enumerate(GENERATION)}
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        generation_bank(bank, llama, adapters=upper)
        abmll, _, _ = train_abmll(BankSource(bank), MetaConfig.from_dict(TINY), tmp_path / "ckpt", progress=False)
    assert abmll.layout.modules == tuple(sorted(upper["user/upper"].modules))
    assert all(".layers.1." in m for m in abmll.layout.modules)
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["extra"]["warm_start_tasks"] == len(GENERATION) and meta["meta"]["model"]["layers"] == [1]
    [adapter] = ABMLLGenerator.from_checkpoint(tmp_path / "ckpt").generate(
        GenerationRequest("Translate the input into French.", base_model=str(llama)))
    assert sorted(adapter.modules) == sorted(upper["user/upper"].modules)


def test_causal_lm_likelihood_prefers_the_oracle_over_a_random_adapter(generation_run, llama):
    root, model, _ = generation_run
    with Bank.open(root / "bank.duckdb") as bank:
        stored = BankSource(bank).adapters("user/upper", kinds=("final",))[0][0]  # the oracle, as the bank keeps it
    rnd = random_adapter(model.likelihood.model, LLAMA_TARGETS, seed=99, base_model=stored.base_model)
    pairs = generation_data("user/upper", 12, 0)
    inputs, outputs = [x for x, _ in pairs], [y for _, y in pairs]
    with torch.no_grad():
        good = float(model.log_likelihood(model.layout.flatten(stored), inputs, outputs)) / len(pairs)
        bad = float(model.log_likelihood(model.layout.flatten(rnd), inputs, outputs)) / len(pairs)
    assert good > bad + 0.1, (good, bad)  # mean log-likelihood per output token, per example


def test_classification_bank_trains_a_prototype_classifier_over_the_users_encoder(bert, tmp_path):
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        classification_bank(bank, bert)
        train_abmll(BankSource(bank), MetaConfig.from_dict(TINY), tmp_path / "ckpt", progress=False)
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert likelihood_spec(meta) == LikelihoodSpec(CLASSIFIER, str(bert.resolve()))
    gen = ABMLLGenerator.from_checkpoint(tmp_path / "ckpt")
    post = gen.posterior(GenerationRequest("Tell fruit from tools.", examples=(("fig jam", 0), ("saw pen", 1)),
                                           base_model=str(bert)), n_samples=2)
    assert post.refined and gen.model.likelihood.base_model_id == str(bert.resolve())  # rebuilt from the record
    named = dict(load_base_model(bert).named_modules())
    assert {m.rsplit(".", 1)[-1] for m in post.mean.modules} == set(BERT_TARGETS)
    for m, a, b in post.mean.items():
        assert (b.shape[0], a.shape[1]) == tuple(named[m].weight.shape)


def test_a_bank_without_stored_examples_is_refused_never_the_suite(llama, tmp_path, capsys):
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        generation_bank(bank, llama, with_data=False)
        with pytest.raises(ConfigError, match="none of the bank's 5 in-bank tasks.*loragen bank tasks import"):
            train_abmll(BankSource(bank), MetaConfig.from_dict(TINY), tmp_path / "ckpt", progress=False)
    code = main(["train", "meta", "--bank", str(tmp_path / "bank.duckdb"), "-o", str(tmp_path / "ckpt"),
                 "--max-steps", "1", "--no-progress-bar", "--base-model", str(llama)])
    err = capsys.readouterr().err
    assert code == 1 and "loragen bank tasks import" in err and "internal error" not in err
    assert not (tmp_path / "ckpt").exists()
    with Bank.open(tmp_path / "empty.duckdb"):
        pass
    assert main(["train", "meta", "--bank", str(tmp_path / "empty.duckdb"), "-o", str(tmp_path / "ckpt")]) == 1
    assert "no in-bank" in capsys.readouterr().err


def test_a_bank_without_adapters_needs_a_base_model_with_the_configured_layers(llama, tmp_path):
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        generation_bank(bank, llama, adapters=dict.fromkeys(GENERATION))
        source = BankSource(bank)
        with pytest.raises(ConfigError, match="--base-model"):
            train_abmll(source, MetaConfig.from_dict(TINY), tmp_path / "ckpt", progress=False)
        with pytest.raises(ConfigError, match=r"no linear layer named \['query', 'key', 'value'\].*q_proj"):
            train_abmll(source, MetaConfig.from_dict(TINY), tmp_path / "ckpt", base_model=str(llama),
                        progress=False)
        layers = {**TINY, "model": {"target_modules": ["q_proj"], "r": 2}}
        model, _, _ = train_abmll(source, MetaConfig.from_dict(layers), tmp_path / "ckpt", base_model=str(llama),
                                  progress=False)
    assert model.layout.r == 2 and all(m.endswith("q_proj") for m in model.layout.modules)


def test_the_likelihood_follows_the_base_model_and_the_tasks(llama, bert):
    assert choose_kind(str(llama), ["generation"]) == CAUSAL_LM
    assert choose_kind(str(bert), ["classification"]) == CLASSIFIER
    with pytest.raises(ConfigError, match="encoder.*generation tasks"):
        choose_kind(str(bert), ["generation"])
    with pytest.raises(ConfigError, match="causal LM.*classification tasks"):
        choose_kind(str(llama), ["classification"])
    with pytest.raises(ConfigError, match="mixes"):
        choose_kind(str(llama), ["classification", "generation"])


def test_checkpoints_from_before_the_record_use_the_suite_classifier():
    spec = likelihood_spec({"layout": {"base_model": "sentence-transformers/all-MiniLM-L6-v2"}})
    assert spec == LikelihoodSpec(CLASSIFIER, canonical_base_model_id(None), provider="minilm-suite")
