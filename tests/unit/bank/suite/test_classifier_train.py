"""SuiteClassifier (fixed prototype head) and the Lightning oracle recipe, on the packaged MiniLM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from loragen.bank.base_model import load_base_model
from loragen.bank.lora.peft_format import load_peft, save_peft
from loragen.bank.train.classifier import label_prototypes
from loragen.bank.train import TrainConfig


def test_head_is_the_same_fixed_prototypes_for_every_task(classifier):
    assert torch.equal(classifier.prototypes, label_prototypes(384))
    # Without an adapter the logits depend on the text only: a pair and its reverse get the same predictions,
    # so base accuracy(B, A) = 1 - base accuracy(A, B).
    texts = ["Hans Müller, Petra Schmidt", "Polska, Niemcy, Francja"]
    assert torch.allclose(classifier.logits(texts, num_labels=2), classifier.logits(texts, num_labels=3)[:, :2])
    with pytest.raises(ValueError, match="num_labels"):
        classifier.logits(texts, num_labels=9)


def test_logits_from_factors_is_differentiable_in_the_factors(classifier):
    path = "encoder.layer.0.attention.self.query"
    a = torch.randn(2, 384, requires_grad=True)
    b = (0.1 * torch.randn(384, 2)).requires_grad_()
    logits = classifier.logits_from_factors(["guten Tag", "dzień dobry"], {path: (a, b)}, scaling=2.0)
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert a.grad is not None and b.grad.abs().sum() > 0
    base = classifier.logits_from_factors(["guten Tag", "dzień dobry"], None)
    assert not torch.allclose(logits.detach(), base)


def test_training_learns_the_task_and_keeps_checkpoints(trained, easy_task, easy_data, classifier):
    final, ckpts = trained.final, trained.checkpoints
    assert final.r == 4 and set(final.target_modules) == {"query", "key", "value"} and len(final.modules) == 18
    assert [c.metadata["step"] for c in ckpts] == sorted(c.metadata["step"] for c in ckpts) and len(ckpts) == 2
    assert all(c.metadata["step"] < final.metadata["step"] for c in ckpts)
    assert final.metadata["task"] == easy_task.name and final.metadata["kind"] == "final"
    acc = classifier.accuracy(easy_data.test, final)
    assert acc >= 0.9 > classifier.accuracy(easy_data.test, None)


def test_a_initialisation_is_fixed_across_tasks(suite, classifier):
    from loragen.bank.train import LoraTaskModule

    first = LoraTaskModule(classifier, TrainConfig(), 2)
    second = LoraTaskModule(classifier, TrainConfig(), 3)
    assert all(torch.equal(a, b) for a, b in zip(first.lora_A, second.lora_A))
    assert all(float(b.detach().abs().sum()) == 0.0 for b in first.lora_B)


def test_adapter_exported_to_peft_classifies_identically_after_reloading(trained, easy_data, classifier, tmp_path):
    from peft import PeftModel

    texts = [t for t, _ in easy_data.test[:16]]
    expected = classifier.logits(texts, trained.final)
    save_peft(trained.final, tmp_path / "adapter")
    assert torch.allclose(classifier.logits(texts, load_peft(tmp_path / "adapter")), expected, atol=1e-5)
    peft_model = PeftModel.from_pretrained(load_base_model(), str(tmp_path / "adapter")).eval()
    batch = classifier.tokenize(texts)
    with torch.no_grad():
        hidden = peft_model(**batch).last_hidden_state  # (n, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(classifier._head(emb, 2), expected, atol=1e-4)
    assert torch.equal(classifier._head(emb, 2).argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("field,value", [("r", 0), ("steps", 0), ("lr", 2.0), ("min_steps", 99), ("stop_loss", -1)])
def test_train_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        TrainConfig(**{field: value})
