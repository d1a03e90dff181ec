from __future__ import annotations

import copy

import pytest
import torch

from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora import save_peft
from loragen.bank.lora.functional import lora_applied
from loragen.meta.config import REFINE_OPTIMIZERS, GenerateConfig
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


@pytest.mark.parametrize("optimizer", REFINE_OPTIMIZERS)
def test_refinement_on_examples_raises_the_likelihood(trained_toy, optimizer):
    gen = _generator(trained_toy)
    gen.config = GenerateConfig(refine_optimizer=optimizer)
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


def test_natural_refinement_keeps_a_small_change_of_the_start_small(trained_toy):
    """A compact (fp16) checkpoint moves the amortized posterior by ~1e-3 of its norm: the natural refinement
    passes such a change through at its own size, Adam's sign-like first steps blow it up."""
    model, guide, _ = trained_toy
    examples = task_examples(TASKS[1], 8, seed=3)
    texts, labels = [t for t, _ in examples], torch.tensor([y for _, y in examples])
    with torch.no_grad():
        loc, scale = guide.posterior(description_embeddings(model.config.embed_dim)[1:2])
    loc, scale = loc[0], scale[0]
    nudge = 1e-3 * loc.norm() * torch.randn(loc.shape, generator=torch.Generator().manual_seed(0)) / loc.numel() ** 0.5
    change = {}
    for optimizer, cfg in (("natural", GenerateConfig()), ("adam", GenerateConfig(refine_optimizer="adam"))):
        with torch.enable_grad():
            a, _ = guide.refine(loc, scale, texts, labels, cfg.refine_steps, cfg.refine_lr, optimizer=optimizer,
                                max_step=cfg.refine_max_step)
            b, _ = guide.refine(loc + nudge, scale, texts, labels, cfg.refine_steps, cfg.refine_lr,
                                optimizer=optimizer, max_step=cfg.refine_max_step)
        assert (a - loc).norm() > 3 * nudge.norm()  # it did move
        change[optimizer] = float((a - b).norm() / nudge.norm())
    assert change["natural"] < 3.0, change
    assert change["adam"] > 3 * change["natural"], change


def test_a_checkpoint_saved_before_the_refine_optimizer_option_keeps_refining_with_adam(trained_toy, tmp_path):
    import json

    from loragen.meta.checkpoint import load_checkpoint, save_checkpoint
    from loragen.meta.config import MetaConfig

    model, guide, _ = trained_toy
    save_checkpoint(model, guide, MetaConfig(model=model.config), tmp_path / "new")
    assert load_checkpoint(tmp_path / "new")[2].generate.refine_optimizer == "natural"
    meta = json.loads((tmp_path / "new" / "config.json").read_text())
    del meta["meta"]["generate"]["refine_optimizer"]
    meta["meta"]["generate"]["refine_lr"] = 0.01
    (tmp_path / "new" / "config.json").write_text(json.dumps(meta))
    old = load_checkpoint(tmp_path / "new")[2].generate
    assert (old.refine_optimizer, old.refine_lr) == ("adam", 0.01)


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
