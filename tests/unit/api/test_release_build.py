"""`loragen release build --tiny` end to end on a tiny suite bank imported from an oracle cache: it writes compact
checkpoints plus a manifest into the shipped folder, plain `generate` then uses them, and a rerun skips every stage."""

from __future__ import annotations

import json

import pytest
import torch

from loragen.api.cli import main
from loragen.api.commands.demo import shipped_generation
from loragen.api.lookup import find_checkpoint
from loragen.bank import paths
from loragen.bank.base_model import DEFAULT_BASE_MODEL
from loragen.bank.generator import GenerationRequest
from loragen.bank.lora import LoraAdapter, load_peft
from loragen.bank.tasks import BUILTIN, OracleCache, get_provider

pytestmark = pytest.mark.slow
STAGES = ("bank", "hypernet", "meta", "eval-full", "compact cvae", "compact abmll", "eval-compact", "trust")


def _oracle(seed: int) -> LoraAdapter:
    """A random MiniLM LoRA in the suite's layout (r=4 on query/key/value of the 6 layers)."""
    g = torch.Generator().manual_seed(seed)
    modules = [f"encoder.layer.{i}.attention.self.{t}" for i in range(6) for t in ("query", "key", "value")]
    return LoraAdapter(base_model=DEFAULT_BASE_MODEL, r=4, lora_alpha=8.0,
                       lora_A={m: torch.randn(4, 384, generator=g) * 0.05 for m in modules},
                       lora_B={m: torch.randn(384, 4, generator=g) * 0.05 for m in modules})


@pytest.fixture()
def oracle_cache(tmp_path):
    tasks = get_provider(BUILTIN, seed=0).tasks()
    chosen = [t for t in tasks if t.split == "train"][:3] + [t for t in tasks if t.split == "heldout"][:1]
    cache = OracleCache(tmp_path / "oracles")
    for i, task in enumerate(chosen):
        cache.save_oracle(task.name, _oracle(i))
    return cache.root


def test_tiny_release_build_ships_generators_that_generate_finds(oracle_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LORAGEN_SHIPPED_DIR", str(tmp_path / "shipped"))
    argv = ["release", "build", "--tiny", "--oracle-cache", str(oracle_cache), "--work", str(tmp_path / "work"),
            "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert all(f"==> {s}\n" in out for s in STAGES if s != "bank"), out

    folder = paths.shipped_base_dir(DEFAULT_BASE_MODEL)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["command"].startswith("loragen release build --tiny") and manifest["base_model"] == DEFAULT_BASE_MODEL
    assert manifest["bank"]["tasks"] == {"heldout": 1, "train": 3} and len(manifest["bank"]["data_sha256"]) == 64
    assert {"torch", "loragen", "pyro-ppl"} <= set(manifest["versions"])
    for method in ("cvae", "abmll"):
        entry = manifest["methods"][method]
        assert entry["bytes"] < entry["full_precision_bytes"] and entry["max_relative_difference"] < 0.01
        assert set(manifest["evaluation"][method]) == {"in_bank", "heldout_task", "heldout_paraphrase",
                                                       "heldout_wording"}
        for cell in manifest["evaluation_side_by_side"][method].values():
            assert {"full", "compact", "difference"} <= set(cell)
    assert manifest["methods"]["cvae"]["bytes"] <= 25e6 and manifest["methods"]["abmll"]["bytes"] <= 25e6
    assert set(manifest["harness"]) == {"full", "compact"}
    assert manifest["trust"]["fitted"] is False and "at least 4 tasks" in manifest["trust"]["reason"]  # 1 held out

    assert find_checkpoint("cvae").path == folder / "hypernet"  # nothing named, nothing of yours: the shipped one
    assert find_checkpoint("abmll").path == folder / "meta"
    description = "label 0 if the text is written in Polish, label 1 if it is written in Czech"
    shipped = shipped_generation(GenerationRequest(description=description, seed=0))  # `loragen demo`'s step 4
    assert shipped["checkpoint"] == str(folder / "hypernet") and isinstance(shipped["adapter"], LoraAdapter)
    assert shipped["evaluation"] == manifest["evaluation"]["cvae"]
    assert main(["generate", description, "-o", str(tmp_path / "adapter"), "--no-score"]) == 0
    assert load_peft(tmp_path / "adapter").metadata["checkpoint"] == str(folder / "hypernet")
    capsys.readouterr()

    assert main(argv) == 0  # resumable: every stage's output exists, nothing is redone
    again = capsys.readouterr().out
    assert all(f"==> {s}: done already" in again for s in STAGES if s != "bank"), again
    rerun = json.loads((folder / "manifest.json").read_text())["seconds"]
    first = manifest["seconds"]
    assert set(STAGES) <= set(rerun) and rerun["hypernet"] == first["hypernet"]  # stage times kept across runs
    assert rerun["total"] == pytest.approx(sum(v for k, v in rerun.items() if k != "total"), abs=0.2)
    assert rerun["total"] >= first["total"]
