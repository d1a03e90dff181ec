"""Uncertainty for adapters of a user's own base model: token-level entropy and mutual information for a causal
LM, the classification scores on any encoder, and probe inputs from the nearest bank task of the same base model."""

from __future__ import annotations

import math

import pytest
import torch

from loragen.api.base_models import BaseModels, load_model
from loragen.api.uncertainty import causal_lm_scores, nearest_task, probe_inputs, score_adapters
from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.causal_lm import prompt_ids
from loragen.bank.lora.functional import lora_applied
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED
from tests._local_models import BERT_TARGETS, LLAMA_TARGETS, tiny_bert
from tests._models import random_adapter, tiny_llama
from tests.unit.bank._bank_util import minilm_adapter

INPUTS = ["ab", "hello", "x"]


@pytest.fixture(scope="module")
def llama(llama_dir):
    return load_model(str(llama_dir), "cpu")


def _adapters(llama_dir, seeds, scale=0.5):
    return [random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(llama_dir), seed=s, scale=scale) for s in seeds]


def test_one_adapter_entropy_and_confidence_match_its_greedy_steps(llama, llama_dir):
    """With one adapter the greedy token is the argmax of each step: confidence is the mean top probability and
    predictive entropy the mean step entropy; there is no disagreement to measure."""
    [adapter] = _adapters(llama_dir, [1])
    scores = causal_lm_scores(llama.model, llama.tokenizer, [adapter], INPUTS, max_new_tokens=6)
    entropies, tops = [], []
    with lora_applied(llama.model, adapter), torch.no_grad():
        for text in INPUTS:
            ids = torch.tensor([prompt_ids(llama.tokenizer, text)])
            out = llama.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                       do_sample=False, output_scores=True, return_dict_in_generate=True,
                                       pad_token_id=llama.tokenizer.pad_token_id,
                                       eos_token_id=llama.tokenizer.eos_token_id)
            for step, token in zip(out.scores, out.sequences[0, ids.shape[1]:]):
                p = torch.softmax(step[0].float(), -1)
                entropies.append(float(-(p * p.clamp_min(1e-12).log()).sum()))
                tops.append(float(p[token]))
                if token == llama.tokenizer.eos_token_id:
                    break
    assert scores["n_tokens"] == len(tops) and scores["mutual_information"] is None
    assert scores["predictive_entropy"] == pytest.approx(sum(entropies) / len(entropies), abs=1e-4)
    assert scores["confidence"] == pytest.approx(sum(tops) / len(tops), abs=1e-4)
    assert scores["predictive_entropy"] == pytest.approx(scores["expected_entropy"], abs=1e-6)


def test_mutual_information_measures_disagreement_between_samples(llama, llama_dir):
    same = causal_lm_scores(llama.model, llama.tokenizer, _adapters(llama_dir, [2, 2, 2]), INPUTS, max_new_tokens=5)
    differ = causal_lm_scores(llama.model, llama.tokenizer, _adapters(llama_dir, [2, 3, 4], scale=2.0), INPUTS,
                              max_new_tokens=5)
    for scores in (same, differ):
        assert scores["n_adapters"] == 3 and scores["n_inputs"] == len(INPUTS) and scores["calibrated"] is False
        assert all(math.isfinite(v) for v in scores.values() if isinstance(v, float))
    assert same["mutual_information"] == pytest.approx(0.0, abs=1e-6)
    assert differ["mutual_information"] > 1e-3
    assert differ["predictive_entropy"] >= differ["expected_entropy"]


def test_probe_inputs_come_from_the_nearest_task_of_the_same_base_model(llama_dir, tmp_path):
    """A closer task of another base model (MiniLM) is passed over for the nearest one of the adapter's base."""
    from loragen.bank.store import Bank

    with Bank.open(tmp_path / "bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="llm/capitals", description="answer with the capital city of the country",
                                 labels=(), data_ref={"provider": STORED}))
        bank.set_task_data("llm/capitals", [("France", "Paris")], val=[("Spain", "Madrid"), ("Italy", "Rome")])
        bank.add(_adapters(llama_dir, [5])[0], task="llm/capitals", kind="final")
        bank.add(minilm_adapter(seed=1), task="clf/capitals", kind="final",
                 description="name the capital city of the country in the text")
        bank.reindex()
        query = "name the capital city of the country in the text"
        assert nearest_task(bank, query)[1] == "clf/capitals"
        similarity, task = nearest_task(bank, query, canonical_base_model_id(llama_dir))
        assert task == "llm/capitals" and 0 < similarity < 1
        assert probe_inputs(bank, query, None, base_model=canonical_base_model_id(llama_dir)) == ["Spain", "Italy"]
        assert probe_inputs(bank, query, [("from examples", 0)]) == ["from examples"]
        assert probe_inputs(bank, query, [("from examples", 0)], inputs=["given"]) == ["given"]
        scores = score_adapters(BaseModels("cpu"), canonical_base_model_id(llama_dir), query,
                                _adapters(llama_dir, [6, 7]), ["Spain", "Italy"], bank=bank)
    assert scores["nearest_task"] == "llm/capitals" and scores["n_adapters"] == 2
    assert all(math.isfinite(scores[k]) for k in ("description_similarity", "predictive_entropy",
                                                  "mutual_information", "confidence"))


def test_generated_and_uploaded_adapters_are_not_tasks_the_bank_knows(llama_dir, tmp_path):
    """An earlier request's generated adapter carries the user's own description: the nearest *task* (what the
    description similarity and the probe inputs mean) skips it and uploads, else asking twice reads as 1.0."""
    from loragen.bank.store import Bank

    query = "reverse the letters of the word"
    with Bank.open(tmp_path / "bank.duckdb") as bank:
        bank.add_task(TaskRecord(name="llm/upper", description="write the word in capital letters", labels=(),
                                 data_ref={"provider": STORED}))
        bank.set_task_data("llm/upper", [("ab", "AB")], val=[("cd", "CD")])
        bank.add(_adapters(llama_dir, [5])[0], task="llm/upper", kind="final")
        bank.add(_adapters(llama_dir, [6])[0], kind="generated", description=query)
        bank.add(_adapters(llama_dir, [7])[0], kind="uploaded", description=query)
        bank.reindex()
        assert bank.search_text(query, k=1)[0].score == pytest.approx(1.0, abs=1e-5)  # the generated one
        similarity, task = nearest_task(bank, query, canonical_base_model_id(llama_dir))
        assert task == "llm/upper" and similarity < 0.9
        assert probe_inputs(bank, query, None, base_model=canonical_base_model_id(llama_dir)) == ["cd"]


def test_a_users_encoder_gets_the_classification_scores(bert_dir):
    pytest.importorskip("loragen.meta.score")
    adapters = [random_adapter(tiny_bert(), BERT_TARGETS, base_model=str(bert_dir), seed=s, scale=0.5)
                for s in (1, 2)]
    scores = score_adapters(BaseModels("cpu"), canonical_base_model_id(bert_dir), "label 0 for questions, 1 for "
                            "statements", adapters, ["is it?", "it is."], num_labels=2)
    assert scores["n_adapters"] == 2 and scores["n_inputs"] == 2 and "n_tokens" not in scores
    assert all(math.isfinite(scores[k]) for k in ("predictive_entropy", "mutual_information", "confidence"))
    assert scores["mutual_information"] > 0  # two different adapters disagree somewhere
