"""Issue 16: `generate` prints a trust line by default, for cvae and retrieve, on base models other than MiniLM
(a tiny random BERT; a tiny random chat Llama, scored by exact match); plainly "not calibrated" before
`loragen trust fit`, a number with an interval after."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loragen.api.cli import main
from loragen.bank.records import TaskRecord
from loragen.bank.tasks import STORED
from tests._models import random_adapter
from tests.unit.bank._custom import tiny_bert_dir

pytestmark = pytest.mark.slow
GROUPS = {"fruit": ("apple", "pear", "plum"), "car": ("truck", "bus", "van"), "red": ("ruby", "blood", "rose"),
          "sea": ("wave", "tide", "reef"), "sky": ("cloud", "star", "moon"), "rock": ("stone", "pebble", "cliff")}
PAIRS = [("fruit", "car"), ("red", "sea"), ("sky", "rock"), ("car", "sky"), ("sea", "fruit"), ("rock", "red"),
         ("fruit", "sky"), ("sea", "car"), ("red", "fruit")]
LINE = re.compile(r"^trust: expected accuracy (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\] \((cvae|retrieve)[;)]", re.M)


def _data(a: str, b: str, n: int, seed: int) -> list[tuple[str, int]]:
    import random

    rng = random.Random(f"{a}-{b}-{seed}")
    return [(" ".join(rng.choices(GROUPS[(a, b)[i % 2]], k=2)), i % 2) for i in range(n)]


def _bank(path: Path, base: Path) -> Path:
    """5 in-bank and 4 held-out two-label tasks with stored data and one random final adapter each."""
    from transformers import AutoModel

    from loragen.bank.base_model import canonical_base_model_id
    from loragen.bank.store import Bank

    model = AutoModel.from_pretrained(base)
    with Bank.open(path) as bank:
        for i, (a, b) in enumerate(PAIRS):
            name = f"me/{a}-vs-{b}"
            bank.add_tasks([TaskRecord(name=name, description=f"label 0 if the words are about {a}, label 1 if "
                                       f"they are about {b}", labels=(a, b), family="me",
                                       split="train" if i < 5 else "heldout", data_ref={"provider": STORED})])
            bank.set_task_data(name, _data(a, b, 16, 0), _data(a, b, 8, 1), _data(a, b, 8, 2))
            bank.add(random_adapter(model, ("query", "value"), r=4, seed=i,
                                    base_model=canonical_base_model_id(base)), task=name, kind="final", source="test")
        bank.reindex()
    return path


def _cli(capsys, *argv) -> str:
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0, argv
    return capsys.readouterr().out


def test_generate_prints_trust_for_cvae_and_retrieve_on_a_tiny_bert(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    base = tiny_bert_dir(tmp_path / "bert")
    bank = _bank(tmp_path / "bank.duckdb", base)
    cvae = tmp_path / "cvae"
    _cli(capsys, "train", "hypernet", "--bank", bank, "-o", cvae, "--max-steps", "4", "--accelerator", "cpu",
         "--devices", "1", "--no-progress-bar")
    desc = "label 0 if the words are about fruit, label 1 if they are about rock"

    out = _cli(capsys, "generate", desc, "-o", tmp_path / "g0", "--checkpoint", cvae, "--bank", bank)
    assert "trust: not calibrated for this generator (no trust file at " in out, out
    assert f"loragen trust fit --bank BANK --method cvae={cvae}" in out and "expected accuracy" not in out

    report = tmp_path / "trust.json"
    out = _cli(capsys, "trust", "fit", "--bank", bank, "--method", f"cvae={cvae}", "--method", "retrieve",
               "--split", "heldout_task", "--condition", "description", "--condition", "labels",
               "--json", report, "--plot", tmp_path / "trust.png", "--no-progress")
    assert (cvae / "trust.json").is_file() and Path(f"{bank}.trust-retrieve.json").is_file(), out
    data = json.loads(report.read_text())
    for method in ("cvae", "retrieve"):
        m = data["methods"][method]["metrics"]
        assert m["n"] == 8 and 0 <= m["mean_abs_error"] <= 1 and "chance_above_0.8" in m
        assert all(0 <= c["low"] <= c["predicted"] <= c["high"] <= 1 for c in data["methods"][method]["cases"])
    assert (tmp_path / "trust.png").stat().st_size > 1000
    stored = json.loads((cvae / "trust.json").read_text())
    assert stored["reference_embeddings"]["shape"][0] == 5 and stored["meta"]["method"] == "cvae"

    for method, extra in (("cvae", ["--checkpoint", cvae]), ("retrieve", [])):
        out = _cli(capsys, "generate", desc, "-o", tmp_path / f"g-{method}", "--method", method, "--bank", bank,
                   *extra, "--labels", "fruit", "rock")
        found = LINE.search(out)
        assert found and found.group(4) == method, out
        expected, low, high = map(float, found.groups()[:3])
        assert low <= expected <= high
        if expected < 0.7:
            assert "low: " in out

    # `trust refit` re-scores the stored cases: a trust file's stale metrics are replaced, the report's methods
    # (retrieval's included) re-scored, a manifest's metrics rewritten
    stored["meta"]["cross_validated"], fresh = {**stored["meta"]["cross_validated"], "mean_abs_error": 9.0}, \
        stored["meta"]["cross_validated"]
    (cvae / "trust.json").write_text(json.dumps(stored))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"trust": {"metrics": {"cvae": {}}}}))
    out = _cli(capsys, "trust", "refit", cvae / "trust.json", report, "--manifest", manifest, "--json",
               tmp_path / "refit.json", "--plot", tmp_path / "refit.png")
    assert re.search(r"^cvae \(.*cvae/trust\.json\): mean \|predicted - measured\| 9\.000, .* -> mean", out, re.M), out
    assert json.loads((cvae / "trust.json").read_text())["meta"]["cross_validated"] == fresh
    refit = json.loads((tmp_path / "refit.json").read_text())
    assert [(e["method"], e["source"]) for e in refit["entries"]] == [
        ("cvae", str(cvae / "trust.json")), ("cvae", str(report)), ("retrieve", str(report))]
    assert refit["entries"][1]["metrics"] == fresh  # the report holds the trust file's cases
    assert json.loads(manifest.read_text())["trust"]["metrics"] == {
        "cvae": fresh, "retrieve": data["methods"]["retrieve"]["metrics"]}


GEN_TRAIN = ("date-name/month/es", "date-name/month/fr", "date-format/long/da_DK")
GEN_HELDOUT = ("date-name/month/pl", "date-name/weekday/es", "date-format/medium/fr_FR", "person-name/family/fr_FR")
GEN_LINE = re.compile(r"^trust: expected exact match (\d\.\d\d) \[(\d\.\d\d), (\d\.\d\d)\] \((cvae|retrieve)[;)]", re.M)


def test_trust_fit_and_generate_on_a_causal_lm_score_exact_match(tmp_path, capsys, monkeypatch):
    """A generation bank (SmolLM2-suite tasks on a tiny random chat Llama): `trust fit` measures exact match on the
    held-out tasks and `generate` then prints an expected exact match for cvae and retrieve."""
    import yaml

    from loragen.bank.base_model import canonical_base_model_id
    from tests.unit.bank._custom import tiny_chat_llama_dir

    monkeypatch.setenv("LORAGEN_HOME", str(tmp_path / "home"))
    llama = tiny_chat_llama_dir(tmp_path / "llama")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"target_modules": ["q_proj", "v_proj"], "layers": [1], "r": 2,
                                      "cache_frozen_layers": True, "min_steps": 2, "num_checkpoints": 1}))
    bank, cvae = tmp_path / "gen.duckdb", tmp_path / "cvae"
    names = [a for n in (*GEN_TRAIN, *GEN_HELDOUT) for a in ("--name", n)]
    _cli(capsys, "bank", "build", "--provider", "smollm2-gen", "--bank", bank, "--base-model", llama, "--config",
         recipe, "--steps", "3", "--no-progress", *names)
    _cli(capsys, "train", "hypernet", "--bank", bank, "-o", cvae, "--max-steps", "4", "--accelerator", "cpu",
         "--devices", "1", "--no-progress-bar")
    desc = "Take the English date and answer with the name of its month as Polish speakers write it."
    gen = ("generate", desc, "--base-model", llama, "--bank", bank)
    out = _cli(capsys, *gen, "-o", tmp_path / "g0", "--checkpoint", cvae)
    assert "trust: not calibrated for this generator" in out and "expected exact match" not in out, out

    report = tmp_path / "trust.json"
    out = _cli(capsys, "trust", "fit", "--bank", bank, "--method", f"cvae={cvae}", "--method", "retrieve",
               "--split", "heldout_task", "--condition", "description", "--condition", "labels", "--max-examples",
               "2", "--json", report, "--plot", tmp_path / "trust.png", "--no-progress")
    data = json.loads(report.read_text())
    assert data["target"] == "exact_match" and data["splits"] == ["heldout_task"], out
    for method in ("cvae", "retrieve"):
        cases = data["methods"][method]["cases"]
        # one case per held-out task: "labels" is no condition of a generation task
        assert sorted(c["task"] for c in cases) == sorted(GEN_HELDOUT)
        assert all(c["condition"] == "description" and c["features"]["chance"] == 0.0 for c in cases)
        assert all(c["measured"] in (0.0, 0.5, 1.0) for c in cases)  # exact match over 2 test pairs
    stored = json.loads((cvae / "trust.json").read_text())
    assert stored["target"] == "exact_match" and stored["meta"]["base_model"] == canonical_base_model_id(llama)

    for method, extra in (("cvae", ["--checkpoint", cvae]), ("retrieve", [])):
        out = _cli(capsys, *gen, "-o", tmp_path / f"g-{method}", "--method", method, *extra)
        found = GEN_LINE.search(out)
        assert found and found.group(4) == method, out
        expected, low, high = map(float, found.groups()[:3])
        assert low <= expected <= high


def test_generate_with_only_the_defaults_scores_against_the_built_in_suite(tmp_path):
    """No bank, no checkpoint, no inputs: the shipped CVAE's trust file, with the nearest built-in suite task as the
    description neighbour and its inputs as probe texts (what the trust file was fitted with), in a real process."""
    from tests.e2e._cli import ROOT, run_cli

    env = {"LORAGEN_HOME": str(tmp_path / "home"), "LORAGEN_SHIPPED_DIR": str(ROOT / "bank" / "shipped")}
    result = run_cli("-v", "generate", "label 0 if the sentence is Polish, 1 if Czech", "-o", tmp_path / "out",
                     env=env)
    assert result.returncode == 0, result.stderr
    found = LINE.search(result.stdout)
    assert found and found.group(4) == "cvae", result.stdout
    used = re.search(r"cvae trust [\d.]+ from (.*)", result.stderr)
    assert used, result.stderr
    for feature in ("bank_similarity", "entropy_probe", "disagreement", "train_similarity"):
        assert f"{feature}=" in used.group(1), used.group(1)
    assert list((tmp_path / "home" / "cache").glob("suite-neighbours-*.npy"))
