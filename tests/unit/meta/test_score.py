from __future__ import annotations

import pytest
import torch

from loragen.bank.generator import GenerationRequest
from loragen.meta.score import Scorer, predictive_stats
from tests.unit.meta._toy import TASKS, description, description_embeddings, task_examples


def test_predictive_stats_split_total_into_aleatoric_and_epistemic():
    agree = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]])  # (S=2, n=1, K=2): same uncertain prediction
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # confident but opposite
    a, d = predictive_stats(agree), predictive_stats(disagree)
    ln2 = torch.log(torch.tensor(2.0)).double()
    torch.testing.assert_close(a["predictive_entropy"], ln2.reshape(1))
    torch.testing.assert_close(a["mutual_information"], torch.zeros(1, dtype=torch.double))
    torch.testing.assert_close(d["mutual_information"], ln2.reshape(1))
    torch.testing.assert_close(d["expected_entropy"], torch.zeros(1, dtype=torch.double))


def test_scores_are_deterministic_for_a_seed(trained_toy, toy_classifier):
    from loragen.meta.generate import ABMLLGenerator

    model, guide, _ = trained_toy
    table = {description(p): e for p, e in zip(TASKS, description_embeddings(model.config.embed_dim))}
    gen = ABMLLGenerator(model, guide, encode=lambda texts: torch.stack([table[t] for t in texts]))
    inputs = [t for t, _ in task_examples(TASKS[0], 8, seed=5)]
    scorer = Scorer(toy_classifier, probe_texts=inputs)

    def run(seed):
        req = GenerationRequest(description(TASKS[0]), base_model="toy", n_samples=4, seed=seed)
        return scorer.score(req.description, gen.posterior(req).samples).to_dict(per_input=True)

    first, second, other = run(3), run(3), run(4)
    assert first == second
    assert first != other
    assert 0.0 <= first["confidence"] <= 1.0 and first["mutual_information"] > 0
    single = scorer.score(description(TASKS[0]), [gen.posterior(GenerationRequest(
        description(TASKS[0]), base_model="toy", seed=3)).mean])
    assert single.mutual_information == pytest.approx(0.0, abs=1e-9)


def test_score_needs_inputs_and_adapters(toy_classifier):
    scorer = Scorer(toy_classifier)
    with pytest.raises(ValueError, match="at least one adapter"):
        scorer.score("x", [])
