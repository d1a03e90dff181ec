"""What both oracle recipes share (target layers by architecture, fixed init, recipe files) and the causal-LM
recipe on its own, on tiny random models."""

from __future__ import annotations

import pytest
import torch

from loragen.bank.errors import ConfigError
from loragen.bank.lora.functional import lora_applied
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import TaskData
from loragen.bank.train import (
    CausalLM,
    LoraModule,
    TrainConfig,
    attention_targets,
    cap_steps,
    load_recipe,
    target_module_paths,
    train_causal_adapter,
)
from tests._models import tiny_gpt2, tiny_llama, tiny_tokenizer
from tests.unit.bank._custom import shout


def _bert():
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64))


def test_attention_projections_are_detected_per_architecture():
    assert attention_targets(_bert()) == ("query", "key", "value")
    assert attention_targets(tiny_llama()) == ("q_proj", "v_proj")
    assert attention_targets(tiny_gpt2()) == ("c_attn",)
    with pytest.raises(ConfigError, match="set target_modules in a recipe"):
        attention_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_layers_pick_blocks_and_unknown_ones_are_refused():
    model = tiny_llama()
    assert target_module_paths(model, ("q_proj", "v_proj"), layers=[1]) == [
        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    assert len(target_module_paths(model, ("q_proj", "v_proj"))) == 4
    with pytest.raises(ConfigError, match=r"layers \[7\] hold none"):
        target_module_paths(model, ("q_proj",), layers=[0, 7])
    with pytest.raises(ConfigError, match="no linear layer"):
        target_module_paths(model, ("query",))


def test_gpt2_conv1d_factors_have_the_right_shapes_and_run():
    model = tiny_gpt2()
    module = LoraModule(model, "tiny-gpt2", TrainConfig(target_modules=("c_attn",)))
    assert module.fan_in_fan_out and module.paths == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert tuple(module.lora_A[0].shape) == (4, 32) and tuple(module.lora_B[0].shape) == (96, 4)
    with torch.no_grad():
        module.lora_B[0].fill_(0.5)
    ids = torch.tensor([[1, 2, 3]])
    base = model(input_ids=ids).logits
    with lora_applied(model, module.factors(), module.config.scaling):
        adapted = model(input_ids=ids).logits
    assert not torch.allclose(base, adapted)
    adapter = module.to_adapter()
    assert adapter.fan_in_fan_out and adapter.target_modules == ["c_attn"]


def test_a_is_fixed_and_b_is_zero_for_every_recipe():
    config = TrainConfig(target_modules=("q_proj", "v_proj"))
    first, second = LoraModule(tiny_llama(0), "a", config), LoraModule(tiny_llama(1), "b", config)
    assert all(torch.equal(a, b) for a, b in zip(first.lora_A, second.lora_A))
    assert all(float(b.detach().abs().sum()) == 0.0 for b in first.lora_B)


@pytest.mark.parametrize("field,value", [("max_length", 4), ("layers", []), ("layers", [-1]), ("layers", [0, 0]),
                                         ("target_modules", ())])
def test_train_config_checks_the_causal_fields(field, value):
    with pytest.raises(ConfigError, match=f"{field}="):
        TrainConfig(**{field: value})


def test_recipe_files_load_into_train_config(tmp_path):
    (tmp_path / "r.yaml").write_text("r: 8\nlayers: [1]\ntarget_modules: [q_proj]\nmax_length: 64\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    config = TrainConfig(**recipe)
    assert (config.r, config.layers, config.target_modules, config.max_length) == (8, (1,), ("q_proj",), 64)
    assert cap_steps(recipe, 5) == {**recipe, "steps": 5, "min_steps": 5, "num_checkpoints": 3}
    assert cap_steps({}, 2)["num_checkpoints"] == 1
    (tmp_path / "bad.yaml").write_text("rank: 8\n")
    with pytest.raises(ConfigError, match=r"unknown recipe key\(s\) \['rank'\]"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text('{"lr": 3}')
    with pytest.raises(ConfigError, match="lr=3"):
        load_recipe(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="no such recipe"):
        load_recipe(tmp_path / "none.yaml")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    tiny_gpt2().save_pretrained(path)
    tiny_tokenizer(chat=False).save_pretrained(path)  # no chat template: the plain "Input: ... Output: " prompt
    return path


def test_causal_recipe_trains_gpt2_and_raises_the_loglik(gpt2_dir):
    lm = CausalLM(gpt2_dir)
    task = TaskRecord(name="shout", description="the word in capitals", labels=())
    pairs = [(x["input"], x["output"]) for x in shout(2)]
    data = TaskData(train=pairs, val=pairs[:4], test=[])
    config = TrainConfig(target_modules=("c_attn",), steps=12, min_steps=12, num_checkpoints=2, lr=3e-2,
                         batch_size=8)
    result = train_causal_adapter(task, data, lm, config)
    assert result.metrics["steps"] == 12 and len(result.checkpoints) == 2
    assert result.final.fan_in_fan_out and result.final.metadata["kind"] == "final"
    assert result.final.base_model == str(gpt2_dir.resolve())
    assert lm.scores(data.val, result.final)["loglik"] > lm.scores(data.val)["loglik"]
    with pytest.raises(ConfigError, match="no output token within max_length=8"):
        train_causal_adapter(task, data, lm, TrainConfig(target_modules=("c_attn",), max_length=8))
