"""A compact CVAE checkpoint (fp16 storage, readout as a truncated SVD) is smaller, records its storage, loads
into a working generator, and generates adapters within a stated tolerance of the full-precision one."""

from __future__ import annotations

import json

from safetensors import safe_open

from loragen.api.release import adapter_difference, compact
from loragen.hypernet.checkpoint import FORMAT_VERSION, compact_checkpoint, load_checkpoint
from loragen.hypernet.generate import CVAEGenerator
from tests.unit.hypernet._synthetic import description

TOLERANCE = 0.01  # max relative ΔW difference a compact checkpoint may show (the shipped one is checked the same)
DESCRIPTIONS = [description("Polish", "German"), description("French", "Italian"), description("Polish", "Czech")]


def test_compact_checkpoint_is_smaller_and_generates_within_tolerance(trained, encode, tmp_path):
    path, module = trained
    report = compact(path, tmp_path / "small", descriptions=DESCRIPTIONS, encode=encode)
    assert report["method"] == "cvae"
    assert report["bytes_after"] < report["bytes_before"] / 3, report
    assert report["max_relative_difference"] < TOLERANCE, report
    full_rank = module.config.model.readout_rank
    assert 1 <= report["readout_rank"] < full_rank
    meta = json.loads((tmp_path / "small" / "config.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["storage"]["dtype"] == "float16" and meta["storage"]["readout_rank"] == report["readout_rank"]
    with safe_open(str(tmp_path / "small" / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    assert str(dtypes["readout.basis"]) == "torch.float16" and str(dtypes["head.weight"]) == "torch.float16"
    assert sorted(k for k, d in dtypes.items() if str(d) == "torch.float32") == meta["storage"]["float32"]
    model, _, _ = load_checkpoint(tmp_path / "small")  # computes in fp32 after load
    assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float32"
               for v in model.state_dict().values())
    assert model.readout.rank == report["readout_rank"]


def test_a_too_small_rank_is_measured_as_a_loss(trained, encode, tmp_path):
    """The tolerance check can fail: a rank-1 readout changes the adapters well beyond it."""
    path, _ = trained
    compact_checkpoint(path, tmp_path / "rank1", max_rank=1)
    full = CVAEGenerator.from_checkpoint(path, encode=encode)
    tiny = CVAEGenerator.from_checkpoint(tmp_path / "rank1", encode=encode)
    assert adapter_difference(full, tiny, DESCRIPTIONS) > TOLERANCE


def test_a_size_budget_caps_the_rank(trained, tmp_path):
    path, _ = trained
    loose = compact_checkpoint(path, tmp_path / "loose", energy=1.0)
    model, _, _ = load_checkpoint(path)
    others = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("readout."))
    per_rank = model.readout.maps.shape[0] * model.readout.n_features + model.readout.basis.shape[1]
    budget = (2 * others + 3 * 2 * per_rank) / 1e6  # room for 3 components in fp16
    capped = compact_checkpoint(path, tmp_path / "capped", energy=1.0, max_mb=budget)
    assert capped["readout_rank"] == 3 < loose["readout_rank"]
    assert capped["bytes_after"] < loose["bytes_after"]


def test_cli_prints_sizes_and_the_difference(trained, tmp_path, capsys):
    from loragen.api.cli import main

    path, _ = trained
    assert main(["release", "compact", str(path), str(tmp_path / "cli"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes_after"] < report["bytes_before"] and report["max_relative_difference"] < TOLERANCE
    assert main(["release", "compact", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 1
    assert "not a readable generator checkpoint" in capsys.readouterr().err
