"""A generated MiniLM adapter, exported to PEFT and loaded with `peft.PeftModel.from_pretrained`, classifies exactly
as the suite's classifier says (issue 5, acceptance 3)."""

import torch
import torch.nn.functional as F

from loragen.bank.base_model import load_base_model
from loragen.bank.train.classifier import LOGIT_SCALE, SuiteClassifier, label_prototypes
from loragen.hypernet.config import HypernetConfig, ModelConfig
from loragen.hypernet.generate import CVAEGenerator
from loragen.hypernet.layout import AdapterLayout
from loragen.hypernet.model import CVAE
from tests._models import random_adapter


def test_generated_adapter_through_peft_matches_the_suite_classifier(encode, tmp_path):
    from peft import PeftModel

    minilm = load_base_model()
    bank = [random_adapter(minilm, ("query", "key", "value"), r=4, seed=s, scale=0.05,
                           base_model="sentence-transformers/all-MiniLM-L6-v2") for s in range(6)]
    layout = AdapterLayout.of(bank[0])
    model = CVAE(HypernetConfig(model=ModelConfig(d_model=32, latent_dim=4, n_layers=1, subspace_rank=8)), layout)
    model.fit_normalisation(torch.stack([layout.to_tokens(a) for a in bank]))  # nonzero mean adapter
    gen = CVAEGenerator(model.eval(), HypernetConfig(model=ModelConfig(d_model=32, latent_dim=4, n_layers=1,
                                                                         subspace_rank=8)), encode)
    [adapter] = gen.generate("Label 0 if the text is written in Polish, label 1 if it is written in Czech.")
    [path] = gen.export([adapter], tmp_path / "pl-cs")

    texts = ["dzień dobry wszystkim tutaj", "dobrý den všem tady", "hello there everyone"]
    clf = SuiteClassifier()
    expected = clf.logits(texts, adapter, num_labels=2)
    assert not torch.allclose(expected, clf.logits(texts, None, num_labels=2), atol=1e-3)  # the adapter does act

    peft_model = PeftModel.from_pretrained(minilm, str(path)).eval()  # injects LoRA layers into minilm
    batch = clf.tokenize(texts)
    with torch.no_grad():
        hidden = peft_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    logits = LOGIT_SCALE * emb @ label_prototypes(emb.shape[-1])[:2].T
    assert torch.allclose(logits, expected, atol=1e-4)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1))
