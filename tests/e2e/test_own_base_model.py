"""The real server with a user's own causal LM (a local tiny Llama): it accepts the base models of its bank's
adapters, takes an upload of an adapter for that model, retrieves it for a description, and scores what it returns
per output token; adapters of base models it was not told about stay refused."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from loragen.api import Client
from loragen.api.sdk import ClientError
from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.lora import save_peft
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED
from tests._local_models import LLAMA_TARGETS, save_llama
from tests._models import random_adapter, tiny_llama
from tests.e2e.conftest import TOKEN, Server, copy_bank, make_settings, run_server

ECHO = "repeat the input text back exactly as it was written"
UPLOAD = "answer every question with the word yes"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_llama(tmp_path_factory.mktemp("e2e-llama") / "tiny-llama")


def _llama_adapter(llama_dir, seed: int):
    return random_adapter(tiny_llama(), LLAMA_TARGETS, base_model=str(llama_dir), seed=seed, scale=0.5)


@pytest.fixture(scope="module")
def llama_bank(bank_template, llama_dir, tmp_path_factory):
    """The e2e bank (MiniLM adapters) plus a generation task for the tiny Llama with stored examples and its
    final adapter."""
    from loragen.bank.store import Bank

    path = copy_bank(bank_template, tmp_path_factory.mktemp("llama-bank"))
    with Bank.open(path) as bank:
        bank.add_task(TaskRecord(name="gen/echo", description=ECHO, labels=(), data_ref={"provider": STORED}))
        bank.set_task_data("gen/echo", [("abc", "abc")], val=[("hello", "hello"), ("xyz", "xyz")])
        bank.add(_llama_adapter(llama_dir, seed=1), task="gen/echo", kind="final", source="test")
        bank.reindex()
    return path


@pytest.fixture(scope="module")
def llama_server(llama_bank, tmp_path_factory) -> Iterator[Server]:
    yield from run_server(make_settings(llama_bank, tmp_path_factory.mktemp("llama-merged")))


def test_server_takes_and_retrieves_a_tiny_llama_adapter(llama_server, llama_dir, tmp_path):
    base = canonical_base_model_id(llama_dir)
    with Client(url=llama_server.url, token=TOKEN) as client:
        uploaded = client.upload(save_peft(_llama_adapter(llama_dir, seed=2), tmp_path / "mine"), description=UPLOAD)
        assert uploaded.kind == "uploaded" and uploaded.base_model == base

        result = client.generate(UPLOAD, base_model=str(llama_dir), method="retrieve")
        assert result.id == uploaded.id and result.adapter.base_model == base  # the upload, not stored twice

        echo = client.generate(ECHO, base_model=str(llama_dir), method="retrieve")
        assert echo.adapter.task == "gen/echo" and echo.adapter.base_model == base
        u = echo.uncertainty
        assert u["nearest_task"] == "gen/echo" and u["n_inputs"] == 2 and u["n_tokens"] > 0  # the task's stored inputs
        assert all(math.isfinite(u[k]) for k in ("predictive_entropy", "confidence", "description_similarity"))

        suite = client.generate("label 0 if the text names a person, label 1 if it names a city")
        assert suite.adapter.base_model == DEFAULT_BASE_MODEL  # MiniLM requests behave as before
        assert {h.id for h in client.search(UPLOAD).hits} >= {uploaded.id}

        with pytest.raises(ClientError) as refused:
            client.predict(["hello"], adapter_id=echo.id)
        assert refused.value.status == 422 and "loragen predict" in str(refused.value)


def test_only_listed_base_models_without_auto(llama_bank, llama_dir, tmp_path):
    """With auto_base_models off the server accepts only its listed base models: the tiny Llama is refused until
    it is listed."""
    from loragen.bank.store import Bank

    adapter_dir = save_peft(_llama_adapter(llama_dir, seed=3), tmp_path / "adapter")
    strict = make_settings(copy_bank(llama_bank, tmp_path / "strict"), tmp_path / "merged", auto_base_models=False)
    with Client(settings=strict) as client, pytest.raises(ClientError) as refused:
        client.upload(adapter_dir, description=UPLOAD)
    assert refused.value.status == 422 and refused.value.code == "unknown_base_model"
    listed = make_settings(copy_bank(llama_bank, tmp_path / "listed"), tmp_path / "merged", auto_base_models=False,
                           base_models=(DEFAULT_BASE_MODEL, str(llama_dir)))
    with Client(settings=listed) as client:
        assert client.upload(adapter_dir, description=UPLOAD).base_model == canonical_base_model_id(llama_dir)
    with Bank.open(tmp_path / "strict" / "bank.duckdb") as bank:
        assert len(bank.adapters()) == 7  # the six suite adapters and the echo task's: the refused one is not there
