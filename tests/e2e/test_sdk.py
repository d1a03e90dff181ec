"""One SDK test body, run twice: in-process (`Client()` on a local bank) and over HTTP against the real server."""

from __future__ import annotations

import json

import pytest
import torch

from loragen.api import Client
from loragen.api.schemas import AdapterInfo, GenerateResponse, SearchResponse
from loragen.api.sdk import ClientError
from loragen.bank.base_model import DEFAULT_BASE_MODEL, load_base_model, load_tokenizer
from loragen.bank.lora import load_peft, save_peft
from loragen.bank.lora.functional import lora_applied
from tests.e2e.conftest import TOKEN, minilm_adapter

SENTENCES = ["Dzień dobry, jak się masz?", "Dobrý den, jak se máš?"]


@pytest.fixture(scope="module", params=["in-process", "http"])
def client(request, server, local_settings):
    if request.param == "http":
        c = Client(url=server.url, token=TOKEN)
    else:
        c = Client(settings=local_settings)
    yield c
    c.close()


@pytest.fixture(scope="module")
def minilm():
    return load_base_model(), load_tokenizer()


def _hidden(model, tokenizer, adapter=None) -> torch.Tensor:
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        if adapter is None:
            return model(**batch).last_hidden_state  # (2, T, 384)
        with lora_applied(model, adapter):
            return model(**batch).last_hidden_state


def test_sdk_round_trip(client, minilm, tmp_path):
    mode = "http" if client.url else "local"
    health = client.health()
    assert "retrieve" in health.methods and health.adapters >= 6

    # search: the right task first, one query in -> one result out, a list in -> a list out
    found = client.search("tell Polish sentences from Czech ones", k=3)
    assert isinstance(found, SearchResponse) and found.hits[0].task == "lang/pl-vs-cs"
    batch = client.search(["is this review positive or negative", "person or city name"], k=1)
    assert [r.hits[0].task for r in batch] == ["sentiment/pos-vs-neg", "entity/person-vs-city"]
    pl_id = found.hits[0].id

    # generate (retrieve): stored with provenance, scored, placed among its bank neighbours
    result = client.generate("decide whether a sentence is written in Polish or in Czech", method="retrieve", seed=0)
    assert isinstance(result, GenerateResponse) and result.ids[0] == result.id and result.method == "retrieve"
    assert result.adapter.base_model == DEFAULT_BASE_MODEL
    assert 0.0 < result.uncertainty["nearest_task_similarity"] <= 1.0
    assert result.id == pl_id or result.neighbours[0].id == pl_id
    assert result.uncertainty["nearest_task"] == "lang/pl-vs-cs"
    assert client.get(result.id) == result.adapter
    # with examples, meta's scorer evaluates the adapter on their texts: entropy, confidence, calibration flag
    scored = client.generate("Polish or Czech?", method="retrieve", labels=["Polish", "Czech"],
                             examples=[("Dzień dobry, jak się masz?", 0), ("Dobrý den, jak se máš?", 1)])
    u = scored.uncertainty
    assert u["n_inputs"] == 2 and u["calibrated"] is False and 0.5 <= u["confidence"] <= 1.0
    assert u["predictive_entropy"] >= 0 and u["mutual_information"] == pytest.approx(0, abs=1e-9)  # one adapter
    assert [g.id for g in client.get([result.id, pl_id])] == [result.id, pl_id]

    # download -> PEFT loads it, and it computes what the bank's adapter computes
    from peft import PeftModel

    model, tokenizer = minilm
    path = client.download(result.id, tmp_path / "generated")
    adapter = load_peft(path)
    peft_model = PeftModel.from_pretrained(load_base_model(), str(path)).eval()
    expected = _hidden(model, tokenizer, adapter)
    got = _hidden(peft_model, tokenizer)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, _hidden(model, tokenizer), atol=1e-3)  # the adapter changes the model

    # upload a new adapter -> stored as 'uploaded', findable by its description
    new_dir = save_peft(minilm_adapter(seed=100 + len(mode)), tmp_path / "mine")
    info = client.upload(new_dir, description="label 0 if the word is a colour, label 1 if it is an animal")
    assert isinstance(info, AdapterInfo) and info.kind == "uploaded"
    assert client.search("is it a colour or an animal", k=1).hits[0].id == info.id
    with pytest.raises(ClientError) as dup:  # the same tensors again: an explicit conflict, nothing stored
        client.upload(new_dir, description="the same adapter again")
    assert dup.value.status == 409

    # merge: written under the server's merge root, equal to base + the weighted deltas
    merged = client.merge([pl_id, info.id], weights=[0.5, 0.5], output=f"merged-{mode}")
    out = merged.output_dir
    config = json.loads(open(f"{out}/config.json").read())
    assert config["model_type"] == "bert"
    from transformers import AutoModel

    merged_model = AutoModel.from_pretrained(out)
    module = "encoder.layer.0.attention.self.query"
    delta = 0.5 * client_adapter(client, pl_id, tmp_path).delta_weight(module) + 0.5 * adapter_of(new_dir, module)
    weight = dict(merged_model.named_modules())[module].weight
    base_weight = dict(model.named_modules())[module].weight
    assert torch.allclose(weight, base_weight + delta, atol=1e-5)

    # predict: the suite classifier with the adapter applied; labels from the adapter's task
    pred = client.predict(SENTENCES, adapter_id=pl_id)
    assert pred.labels == ["Polish", "Czech"] and len(pred.predictions) == 2
    assert all(abs(sum(row) - 1.0) < 1e-5 for row in pred.probabilities)
    base = client.predict(SENTENCES[0])  # one text in -> one row out
    assert len(base.probabilities) == 1 and base.probabilities[0] != pred.probabilities[0]

    # reindex: everything indexed, searches still right
    stats = client.reindex().stats
    assert stats["adapters"] >= 7 and stats["indexes"]["text"]["delta"] == 0
    assert client.search("tell Polish sentences from Czech ones", k=1).hits[0].id == pl_id

    # errors: the same status and code in both modes
    with pytest.raises(ClientError) as missing:
        client.get("no-such-adapter")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(ClientError) as unavailable:
        client.generate("anything at all", method="abmll")
    assert unavailable.value.status == 503


def client_adapter(client, adapter_id, tmp_path):
    return load_peft(client.download(adapter_id, tmp_path / f"dl-{adapter_id}"))


def adapter_of(directory, module):
    return load_peft(directory).delta_weight(module)


def test_calibrator_next_to_the_abmll_checkpoint_is_used(bank_template, tmp_path):
    """`bench/meta_eval.py` writes calibrator.json into the ABMLL checkpoint it measured; the service then reports a
    calibrated confidence without being told where the file is (an explicit LORAGEN_CALIBRATOR still wins)."""
    from loragen.meta.calibration import LogisticCalibrator
    from tests.e2e.conftest import copy_bank, make_settings

    ckpt = tmp_path / "abmll"
    ckpt.mkdir()
    LogisticCalibrator(features=("max_prob",), mean=[0.5], std=[0.25], weight=[1.0], bias=0.0).save(ckpt / "calibrator.json")
    settings = make_settings(copy_bank(bank_template, tmp_path / "bank"), tmp_path / "merged", abmll_checkpoint=ckpt)
    with Client(settings=settings) as client:
        u = client.generate("Polish or Czech?", method="retrieve", labels=["Polish", "Czech"],
                            examples=[(SENTENCES[0], 0), (SENTENCES[1], 1)]).uncertainty
    assert u["calibrated"] is True and 0.0 <= u["confidence"] <= 1.0
