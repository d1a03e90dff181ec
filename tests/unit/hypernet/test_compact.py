"""A compact CVAE checkpoint (fp16 storage, readout as a truncated SVD) is smaller, records its storage, loads
into a working generator, and generates adapters within a stated tolerance of the full-precision one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from loragen.bank._codes import row_bytes
from loragen.bank.errors import CheckpointError

from loragen.api.release import adapter_difference, compact
from loragen.hypernet.checkpoint import FORMAT_VERSION, compact_checkpoint, load_checkpoint, stored_bytes
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
    assert meta["format_version"] == FORMAT_VERSION == 3
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


def test_a_size_budget_below_fp16_stores_the_readout_as_codes(trained, encode, tmp_path):
    path, _ = trained
    loose = compact_checkpoint(path, tmp_path / "loose", energy=1.0)
    assert loose["coded_rows"] == {}  # fp16 fits: no codes
    model, _, _ = load_checkpoint(tmp_path / "loose")
    rank, cols = model.readout.basis.shape
    maps_rows = int((model.readout.maps.reshape(-1, rank).abs().amax(1) > 0).sum())
    others = stored_bytes({k: v for k, v in model.state_dict().items() if not k.startswith("readout.")})
    # room for the map's non-zero rows at 8 bits and the basis at 4 bits plus a quarter of the way to 8 bits
    four, eight = rank * row_bytes(cols, 4), rank * row_bytes(cols, 8)
    budget = (others + 32_768 + maps_rows * row_bytes(rank, 8) + four + (eight - four) // 4) / 1e6
    capped = compact_checkpoint(path, tmp_path / "capped", energy=1.0, max_mb=budget)
    assert capped["bytes_after"] <= budget * 1e6 < loose["bytes_after"]
    rows = capped["coded_rows"]["readout.basis"]
    assert rows["4"] > 0 and rows["8"] > 0 and sum(rows.values()) == capped["readout_rank"] == loose["readout_rank"]
    meta = json.loads((tmp_path / "capped" / "config.json").read_text())
    assert meta["storage"]["codes"]["readout.basis"] == list(model.readout.basis.shape)
    small, _, _ = load_checkpoint(tmp_path / "capped")
    assert small.readout.basis.dtype == torch.float32 and small.readout.basis.shape == model.readout.basis.shape
    full = CVAEGenerator.from_checkpoint(path, encode=encode)
    diff = adapter_difference(full, CVAEGenerator.from_checkpoint(tmp_path / "capped", encode=encode), DESCRIPTIONS)
    assert 0 < diff < 0.5  # lossy, measured, and still the same adapters roughly
    with pytest.raises(CheckpointError, match="cannot hold this CVAE"):
        compact_checkpoint(path, tmp_path / "tiny", max_mb=0.01)


def test_cli_prints_sizes_and_the_difference(trained, tmp_path, capsys):
    from loragen.api.cli import main

    path, _ = trained
    assert main(["release", "compact", str(path), str(tmp_path / "cli"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes_after"] < report["bytes_before"] and report["max_relative_difference"] < TOLERANCE
    assert main(["release", "compact", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 1
    assert "not a readable generator checkpoint" in capsys.readouterr().err
