import json

import pytest
import torch

from loragen.bank.base_model import canonical_base_model_id
from loragen.bank.errors import CheckpointError, UnknownBaseModelError
from loragen.bank.generator import AdapterGenerator, GenerationRequest
from loragen.bank.lora import load_peft
from loragen.hypernet.generate import CVAEGenerator
from tests.unit.hypernet._synthetic import description, synthetic_adapter


def _rel_error(a, b) -> float:
    num = sum(float((a.delta_weight(m) - b.delta_weight(m)).norm() ** 2) for m in b.modules)
    return num / sum(float(b.delta_weight(m).norm() ** 2) for m in b.modules)


@pytest.fixture(scope="module")
def gen(trained, encode):
    path, _ = trained
    return CVAEGenerator.from_checkpoint(path, encode=encode)


def test_is_an_adapter_generator(gen):
    assert isinstance(gen, AdapterGenerator) and gen.name == "cvae"


def test_in_bank_generation_reproduces_the_bank_adapter(gen):
    for x, y in (("Polish", "German"), ("French", "Italian")):
        [adapter] = gen.generate(description(x, y))
        assert _rel_error(adapter, synthetic_adapter(adapter.base_model, x, y)) < 0.15
        assert adapter.metadata["generator"] == "cvae"


def test_label_order_matters(gen):
    [ab] = gen.generate(description("Polish", "German"))
    ref_ba = synthetic_adapter(ab.base_model, "German", "Polish")
    assert _rel_error(ab, ref_ba) > 0.5  # the swapped task is a different adapter


def test_seeded_samples_are_reproducible_and_differ(gen):
    text = description("Spanish", "French")
    a = gen.generate(text, n_samples=3, seed=7)
    b = gen.generate(text, n_samples=3, seed=7)
    c = gen.generate(text, n_samples=3, seed=8)
    assert len(a) == 3
    assert all(x.sha256() == y.sha256() for x, y in zip(a, b))
    assert a[0].sha256() != a[1].sha256() and a[0].sha256() != c[0].sha256()
    assert gen.generate(text, seed=1)[0].sha256() == gen.generate(text, seed=2)[0].sha256()  # the mean


def test_request_object_labels_and_examples(gen):
    base = gen.layout.base_model
    req = GenerationRequest(description("Polish", "German"), labels=("Polish", "German"),
                            examples=(("Polish words number 1", 0), ("German words number 2", 1)),
                            base_model=base)
    [adapter] = gen.generate(req)
    assert adapter.metadata["labels"] == ["Polish", "German"] and adapter.metadata["n_examples"] == 2
    assert _rel_error(adapter, synthetic_adapter(base, "Polish", "German")) < 0.3
    batch = gen.generate_batch([req, req])
    assert batch[0][0].sha256() == batch[1][0].sha256()
    assert _rel_error(batch[0][0], adapter) < 1e-8  # batching changes float rounding only


@pytest.mark.parametrize("text", ["", "   ", "x" * 5000])
def test_bad_descriptions_are_refused(gen, text):
    with pytest.raises(ValueError, match="description"):
        gen.generate(text)


def test_too_many_classes_and_bad_examples(gen):
    with pytest.raises(ValueError, match="at most 8"):
        gen.generate("pick a class", labels=[str(i) for i in range(9)])
    with pytest.raises(ValueError, match="example"):
        gen.generate("pick a class", labels=["a", "b"], examples=[("t", 5)])


def test_unknown_or_other_base_model(gen, trained):
    with pytest.raises(UnknownBaseModelError, match="unknown base model"):
        gen.generate(GenerationRequest("label 0 if a, label 1 if b", base_model="not/a-model"))
    with pytest.raises(CheckpointError, match="base model"):
        gen.generate(GenerationRequest("label 0 if a, label 1 if b"))  # the packaged MiniLM: not this checkpoint
    with pytest.raises(CheckpointError, match="base model"):
        CVAEGenerator.from_checkpoint(trained[0], base_model="minilm")


def test_peft_export_loads_with_peft(gen, tmp_path, tiny_llama_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapters = gen.generate(description("Polish", "German"), n_samples=2, seed=0)
    paths = gen.export(adapters, tmp_path / "out")
    assert [p.name for p in paths] == ["sample-0", "sample-1"]
    back = load_peft(paths[0])
    assert back.sha256() == adapters[0].sha256()
    assert json.loads((paths[0] / "adapter_config.json").read_text())["r"] == adapters[0].r
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = base(ids).logits
        peft_model = PeftModel.from_pretrained(base, str(paths[0])).eval()
        adapted = peft_model(ids).logits
    from loragen.bank.lora.functional import lora_applied

    base2 = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with torch.no_grad(), lora_applied(base2, adapters[0]):
        expected = base2(ids).logits
    assert not torch.allclose(plain, adapted)
    assert torch.allclose(adapted, expected, atol=1e-4)
    assert canonical_base_model_id(tiny_llama_dir) == adapters[0].base_model
