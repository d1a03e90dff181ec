"""End-to-end fixtures: a tiny real bank (DuckDB + FAISS + MiniLM embeddings) of random MiniLM adapters, and the
real server (uvicorn on 127.0.0.1, a free port, in a background thread) serving a copy of it."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from loragen.api.settings import Settings
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.lora import LoraAdapter
from loragen.bank.records import TaskRecord

TOKEN = "test-token-0123456789"
TARGETS = ("query", "value")
MINILM_SHAPE = {"in": 384, "out": 384, "layers": 6}

TASKS = [
    ("lang/pl-vs-cs", "label 0 if the sentence is Polish, label 1 if it is Czech", ("Polish", "Czech")),
    ("lang/es-vs-pt", "label 0 if the sentence is Spanish, label 1 if it is Portuguese", ("Spanish", "Portuguese")),
    ("entity/person-vs-city", "label 0 if the text names a person, label 1 if it names a city", ("person", "city")),
    ("sentiment/pos-vs-neg", "label 0 if the review is positive, label 1 if it is negative", ("pos", "neg")),
    ("topic/sport-vs-politics", "label 0 for sport news, label 1 for politics news", ("sport", "politics")),
    ("format/date-vs-number", "label 0 if the string is a date, label 1 if it is a number", ("date", "number")),
]


def minilm_adapter(seed: int, r: int = 4, scale: float = 0.05, base_model: str = DEFAULT_BASE_MODEL,
                   in_features: int = 384) -> LoraAdapter:
    """A random LoRA adapter for MiniLM's attention query/value projections (all 6 layers)."""
    g = torch.Generator().manual_seed(seed)
    modules = [f"encoder.layer.{i}.attention.self.{t}" for i in range(MINILM_SHAPE["layers"]) for t in TARGETS]
    lora_A = {m: torch.randn(r, in_features, generator=g) * scale for m in modules}  # (r, in)
    lora_B = {m: torch.randn(384, r, generator=g) * scale for m in modules}  # (out, r)
    return LoraAdapter(base_model=base_model, r=r, lora_alpha=2.0 * r, lora_A=lora_A, lora_B=lora_B)


@pytest.fixture(scope="session")
def bank_template(tmp_path_factory) -> Path:
    """A bank file with the six tasks and one random adapter each, re-indexed (built once per session)."""
    from loragen.bank.store import Bank

    path = tmp_path_factory.mktemp("bank-template") / "bank.duckdb"
    with Bank.open(path) as bank:
        for i, (name, description, labels) in enumerate(TASKS):
            bank.add_task(TaskRecord(name=name, description=description, labels=labels, family=name.split("/")[0]))
            bank.add(minilm_adapter(seed=i), task=name, description=description, kind="final", source="test")
        bank.reindex()
    return path


def copy_bank(template: Path, directory: Path) -> Path:
    """A private copy of a bank (the DuckDB file and its index folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(template, directory / template.name)
    shutil.copytree(template.with_name(template.name + ".indexes"), directory / (template.name + ".indexes"))
    return directory / template.name


def make_settings(bank_path: Path, merge_root: Path, **overrides) -> Settings:
    values = dict(bank_path=bank_path, token=TOKEN, merge_root=merge_root, reindex_interval_s=0,
                  max_request_bytes=64 * 1024, max_upload_bytes=2 * 1024 * 1024, methods=("retrieve",),
                  generation_workers=2)
    values.update(overrides)
    return Settings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    settings: Settings
    app: object

    @property
    def service(self):
        return self.app.state.service


def run_server(settings: Settings, timeout: float = 120.0, app=None) -> Iterator[Server]:
    """Serve `app` (default `create_app(settings=...)`) with uvicorn on 127.0.0.1 in a thread until the generator
    is closed."""
    import uvicorn

    from loragen.api.app import create_app

    app = app or create_app(settings=settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start; see the log above")
        time.sleep(0.05)
    try:
        yield Server(url=f"http://127.0.0.1:{port}", settings=settings, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def server(bank_template, tmp_path_factory) -> Iterator[Server]:
    """The real server on loopback, with a token, small size limits and its own copy of the bank."""
    root = tmp_path_factory.mktemp("server")
    settings = make_settings(copy_bank(bank_template, root / "bank"), root / "merged")
    yield from run_server(settings)


@pytest.fixture(scope="session")
def local_settings(bank_template, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("local")
    return make_settings(copy_bank(bank_template, root / "bank"), root / "merged")
