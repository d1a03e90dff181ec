"""Shipped generators: the lookup order named > yours at the default location > shipped for the requested base model
> the demo's; `loragen --version` and GET /healthz report them with their manifest's evaluation summary."""

from __future__ import annotations

import json
import shutil

import pytest

from loragen.api.cli import main
from loragen.api.lookup import Found, find_checkpoint, shipped_generators
from loragen.bank import paths
from loragen.bank.base_model import DEFAULT_BASE_MODEL, canonical_base_model_id
from loragen.bank.errors import CheckpointError
from loragen.bank.lora import load_peft

DESCRIPTION = "label 0 if the text is written in Polish, label 1 if the text is written in German"
MANIFEST = {"base_model": "", "methods": {"cvae": {"folder": "hypernet", "bytes": 2_500_000}},
            "evaluation": {"cvae": {"in_bank": 0.97, "heldout_task": 0.91, "heldout_paraphrase": 0.9}},
            "created_at": "2026-12-01T00:00:00+00:00", "loragen_version": "0.1.0",
            "command": "loragen release build --oracle-cache /private/cache"}


@pytest.fixture(autouse=True)
def _dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LORAGEN_SHIPPED_DIR", str(tmp_path / "shipped"))


def _generate(tmp_path, name: str, *flags: str) -> int:
    return main(["generate", DESCRIPTION, "-o", str(tmp_path / name), "--no-score", *flags])


def test_lookup_order_named_yours_shipped_demo(cvae_checkpoint, llama_dir, tmp_path):
    base = canonical_base_model_id(llama_dir)
    demo = shutil.copytree(cvae_checkpoint, paths.demo_home() / "hypernet")
    assert find_checkpoint("cvae", base_model=str(llama_dir)) == Found(demo, "demo")

    shipped = shutil.copytree(cvae_checkpoint, paths.shipped_dir("hypernet", base))
    assert shipped.is_relative_to(tmp_path / "shipped")  # LORAGEN_SHIPPED_DIR moves the shipped root
    assert find_checkpoint("cvae", base_model=str(llama_dir)) == Found(shipped, "shipped")  # shipped beats the demo
    assert find_checkpoint("cvae") == Found(demo, "demo")  # shipped is per base model: none for MiniLM here
    assert _generate(tmp_path, "out", "--base-model", str(llama_dir)) == 0  # plain generate, nothing named
    assert load_peft(tmp_path / "out").metadata["checkpoint"] == str(shipped)

    default = shutil.copytree(cvae_checkpoint, paths.checkpoint_dir("hypernet"))  # yours beats the shipped one
    assert find_checkpoint("cvae", base_model=str(llama_dir)) == Found(default, "default")
    assert find_checkpoint("cvae", tmp_path / "named", str(llama_dir)) == Found(tmp_path / "named", "named")


def test_the_default_base_model_gets_its_shipped_generator(cvae_checkpoint, tmp_path):
    shipped = shutil.copytree(cvae_checkpoint, paths.shipped_dir("hypernet", DEFAULT_BASE_MODEL))
    assert find_checkpoint("cvae") == Found(shipped, "shipped")
    assert find_checkpoint("cvae", base_model="minilm") == Found(shipped, "shipped")
    with pytest.raises(CheckpointError, match=f"none shipped for {DEFAULT_BASE_MODEL}"):  # no ABMLL shipped
        find_checkpoint("abmll")


def test_your_generator_for_another_base_model_does_not_hide_the_shipped_one(cvae_checkpoint, tmp_path):
    """Yours (here for a tiny Llama) wins for its own base model and when none is asked for, but a request for
    MiniLM gets MiniLM's shipped generator, not a checkpoint that would refuse it."""
    yours = shutil.copytree(cvae_checkpoint, paths.checkpoint_dir("hypernet"))
    assert find_checkpoint("cvae") == Found(yours, "default")
    with pytest.raises(CheckpointError, match="none shipped for"):
        find_checkpoint("cvae", base_model="minilm")
    shipped = shutil.copytree(cvae_checkpoint, paths.shipped_dir("hypernet", DEFAULT_BASE_MODEL))
    assert find_checkpoint("cvae", base_model="minilm") == Found(shipped, "shipped")
    assert find_checkpoint("cvae", base_model=DEFAULT_BASE_MODEL) == Found(shipped, "shipped")


def test_the_smollm2_demo_is_found_for_smollm2_only(cvae_checkpoint):
    """`loragen demo --base-model smollm2` keeps its generator under <home>/demo-smollm2: a request for SmolLM2
    falls back to it (the lookup reads only the checkpoint's recorded base model), one for MiniLM does not."""
    from loragen.bank.base_model import SMOLLM2

    demo = shutil.copytree(cvae_checkpoint, paths.demo_home("smollm2") / "hypernet")
    config = json.loads((demo / "config.json").read_text())
    config["layout"]["base_model"] = SMOLLM2
    (demo / "config.json").write_text(json.dumps(config))
    assert find_checkpoint("cvae", base_model="smollm2") == Found(demo, "demo")
    assert find_checkpoint("cvae", base_model=SMOLLM2) == Found(demo, "demo")
    with pytest.raises(CheckpointError, match="demo"):
        find_checkpoint("cvae", base_model="minilm")


def _ship_manifest() -> None:
    folder = paths.shipped_base_dir(DEFAULT_BASE_MODEL)
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, "base_model": DEFAULT_BASE_MODEL}))


def test_version_reports_shipped_generators(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and "shipped generators: none" in capsys.readouterr().out
    _ship_manifest()
    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out
    assert f"shipped for {DEFAULT_BASE_MODEL}: cvae (2.5 MB)" in out
    assert "cvae normalised gain: in_bank 0.970, heldout_task 0.910, heldout_paraphrase 0.900" in out


def test_healthz_reports_shipped_generators_without_the_build_command(tmp_path):
    from fastapi.testclient import TestClient

    from loragen.api.app import create_app
    from loragen.api.settings import Settings

    _ship_manifest()
    settings = Settings(bank_path=tmp_path / "bank.duckdb", merge_root=tmp_path / "merged", reindex_interval_s=0,
                        methods=("retrieve",))
    with TestClient(create_app(settings=settings)) as client:
        body = client.get("/healthz").json()
    assert body["shipped"] == shipped_generators()
    assert body["shipped"][DEFAULT_BASE_MODEL]["evaluation"]["cvae"]["heldout_task"] == 0.91
    assert "command" not in body["shipped"][DEFAULT_BASE_MODEL] and "/private/cache" not in json.dumps(body)
