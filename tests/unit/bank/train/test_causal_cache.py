"""Training from cached lower-block activations is the plain causal-LM recipe, only cheaper: same loss, same
gradients, same trained adapter (tiny random Llama)."""

from __future__ import annotations

import pytest
import torch

from loragen.bank.causal_lm import collate, encode_example, output_loss, pad_id
from loragen.bank.lora.functional import lora_applied
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import TaskData
from loragen.bank.train import CausalLM, TrainConfig, train_causal_adapter
from loragen.bank.train.causal import CachedCausalLoraModule, CausalLoraModule, cache_start
from tests._models import tiny_gpt2, tiny_llama, tiny_tokenizer

PAIRS = [(w, w.upper()) for w in ("cat", "doggo", "a", "fishes", "owl", "newt", "yak", "bees", "ox", "hen")]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    model = tiny_llama()
    model.config.num_hidden_layers = 3
    model.model.layers.append(type(model.model.layers[0])(model.config, 2))  # 3 blocks: cache 1, adapt 2
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return CausalLM(path)


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"target_modules": ("q_proj", "v_proj"), "layers": (1, 2), "r": 4, "steps": 6,
                          "min_steps": 6, "num_checkpoints": 2, "lr": 3e-2, "batch_size": 4, "stop_loss": 0.0,
                          **kw})


def test_cached_loss_and_gradients_match_the_plain_path(lm):
    encoded = [encode_example(lm.tokenizer, x, y) for x, y in PAIRS]
    whole = collate(encoded, pad_id(lm.tokenizer))
    plain, cached = CausalLoraModule(lm, _config()), CachedCausalLoraModule(lm, _config(), whole, start=1)
    for module in (plain, cached):  # B != 0, so the gradients of A are not zero
        with torch.no_grad():
            for b in module.lora_B:
                b.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    rows = torch.tensor([3, 0, 5, 5])
    with lora_applied(lm.model, plain.factors(), plain.config.scaling):
        expected = output_loss(lm.model, collate([encoded[i] for i in rows], pad_id(lm.tokenizer)))
    expected.backward()
    got = cached.training_step(rows, 0)
    got.backward()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    for p, q in zip([*plain.lora_A, *plain.lora_B], [*cached.lora_A, *cached.lora_B]):
        assert p.grad.abs().max() > 0
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


def test_cached_training_gives_the_plain_adapter(lm):
    task = TaskRecord(name="shout", description="the word in capitals", labels=())
    data = TaskData(train=PAIRS, val=PAIRS[:3], test=[])
    plain = train_causal_adapter(task, data, lm, _config())
    cached = train_causal_adapter(task, data, lm, _config(cache_frozen_layers=True))
    assert plain.metrics["cached_below"] is None and cached.metrics["cached_below"] == 1
    assert len(cached.checkpoints) == 2 and cached.metrics["steps"] == 6
    assert cached.metrics["train_loss"] == pytest.approx(plain.metrics["train_loss"], rel=1e-4)
    for path in plain.final.lora_B:
        torch.testing.assert_close(cached.final.lora_B[path], plain.final.lora_B[path], rtol=1e-3, atol=1e-5)
    assert lm.model.model.layers is not None and len(lm.model.model.layers) == 3  # the blocks are restored


def test_nothing_is_cached_from_block_0_or_on_other_architectures(lm):
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.2.self_attn.q_proj"]
    assert cache_start(lm.model, paths) is None and cache_start(lm.model, paths[1:]) == 2
    assert cache_start(tiny_gpt2(), ["transformer.h.1.attn.c_attn"]) is None
