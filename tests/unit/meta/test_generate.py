from __future__ import annotations

import copy

import torch

from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora import save_peft
from loragen.bank.lora.functional import lora_applied
from loragen.meta.generate import ABMLLGenerator
from tests.unit.meta._toy import TASKS, description, description_embeddings, task_examples


def _generator(trained_toy) -> ABMLLGenerator:
    model, guide, _ = trained_toy
    table = {description(p): e for p, e in zip(TASKS, description_embeddings(model.config.embed_dim))}
    return ABMLLGenerator(model, guide, encode=lambda texts: torch.stack([table[t] for t in texts]))


def _request(i: int = 0, **kw) -> GenerationRequest:
    return GenerationRequest(description(TASKS[i]), base_model="toy", **kw)


def test_generator_is_an_adapter_generator(trained_toy):
    gen = _generator(trained_toy)
    assert isinstance(gen, AdapterGenerator) and gen.name == "abmll"
    assert len(gen.generate(_request())) == 1
    assert len(gen.generate(_request(n_samples=3, seed=1))) == 3


def test_posterior_samples_differ_and_are_seeded(trained_toy):
    gen = _generator(trained_toy)
    post = gen.posterior(_request(n_samples=4, seed=7))
    flat = torch.stack([a.flat_parameters() for a in post.samples])
    assert torch.cdist(flat, flat)[~torch.eye(4, dtype=torch.bool)].min() > 0  # every pair differs
    assert not torch.equal(flat[0], post.mean.flat_parameters())
    again = gen.posterior(_request(n_samples=4, seed=7))
    assert all(a.sha256() == b.sha256() for a, b in zip(post.samples, again.samples))
    other = gen.posterior(_request(n_samples=4, seed=8))
    assert post.samples[0].sha256() != other.samples[0].sha256()


def test_mean_adapter_loads_in_peft(trained_toy, toy_classifier, tmp_path):
    from peft import PeftModel

    mean = _generator(trained_toy).generate(_request(2))[0]
    save_peft(mean, tmp_path / "mean")
    base = toy_classifier.model
    enc = toy_classifier.tokenizer(["red green blue pink"], return_tensors="pt")
    with torch.no_grad(), lora_applied(base, mean):
        expected = base(**enc).last_hidden_state
    with torch.no_grad():
        plain = base(**enc).last_hidden_state
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "mean").eval()
        got = peft_model(**enc).last_hidden_state
    assert not torch.allclose(plain, expected, atol=1e-4)  # the adapter is not the identity
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_refinement_on_examples_raises_the_likelihood(trained_toy):
    gen = _generator(trained_toy)
    model = trained_toy[0]
    examples = tuple(task_examples(TASKS[1], 16, seed=3))
    texts, labels = [t for t, _ in examples], torch.tensor([y for _, y in examples])
    plain = gen.posterior(_request(1, seed=0))
    refined = gen.posterior(_request(1, seed=0, examples=examples, labels=("a", "b")))
    assert refined.refined and not plain.refined
    with torch.no_grad():
        ll_plain = model.log_likelihood(plain.loc, texts, labels)
        ll_refined = model.log_likelihood(refined.loc, texts, labels)
    assert ll_refined > ll_plain


def test_the_same_request_is_refined_once_for_its_mean_and_its_samples(trained_toy, monkeypatch):
    gen = _generator(trained_toy)
    examples = tuple(task_examples(TASKS[1], 8, seed=4))
    calls = []
    refine = gen.guide.refine
    monkeypatch.setattr(gen.guide, "refine", lambda *a, **k: calls.append(1) or refine(*a, **k))
    mean = gen.posterior(_request(1, seed=0, examples=examples))
    samples = gen.posterior(_request(1, seed=0, examples=examples, n_samples=4))
    assert len(calls) == 1 and torch.equal(mean.loc, samples.loc) and torch.equal(mean.scale, samples.scale)
    gen.posterior(_request(1, seed=1, examples=examples))  # another seed: another refinement
    gen.posterior(_request(1, seed=0, examples=examples[:4]))  # other examples: another refinement
    assert len(calls) == 3
