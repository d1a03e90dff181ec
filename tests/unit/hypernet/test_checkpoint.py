import json

import pytest
import torch

from loragen.bank.errors import CheckpointError
from loragen.hypernet.checkpoint import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint, save_checkpoint


def test_round_trip_is_exact_and_json_plus_safetensors(trained, tmp_path):
    path, module = trained
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    model, config, meta = load_checkpoint(path)
    original = module.model.cpu().state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k
    assert config == module.config
    assert meta["extra"]["world_size"] == 1 and meta["layout"]["r"] == 2
    again = save_checkpoint(model, config, tmp_path / "again")
    model2, _, _ = load_checkpoint(again)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))


def test_mismatched_base_model_or_targets(trained):
    path, _ = trained
    with pytest.raises(CheckpointError, match="sentence-transformers/all-MiniLM-L6-v2"):
        load_checkpoint(path, base_model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(CheckpointError, match="targets modules"):
        load_checkpoint(path, target_modules=["query", "value"])


def _copy(path, dst):
    dst.mkdir()
    for p in path.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_broken_checkpoints_say_what_is_wrong(trained, tmp_path):
    path, _ = trained
    missing = tmp_path / "missing"
    with pytest.raises(CheckpointError, match=f"{missing}: no hypernet checkpoint.*loragen train hypernet"):
        load_checkpoint(tmp_path / "missing")
    no_config = _copy(path, tmp_path / "no-config")
    (no_config / CONFIG_NAME).unlink()
    with pytest.raises(CheckpointError, match=f"missing {CONFIG_NAME}.*loragen train hypernet"):
        load_checkpoint(no_config)
    foreign = _copy(path, tmp_path / "foreign")
    meta = json.loads((foreign / CONFIG_NAME).read_text())
    meta["format"] = "loragen-meta-abmll"
    (foreign / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a loragen-hypernet-cvae checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "last.ckpt").write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="never loaded"):
        load_checkpoint(pickled)
    newer = _copy(path, tmp_path / "newer")
    meta = json.loads((newer / CONFIG_NAME).read_text())
    meta["format_version"] = 99
    (newer / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer than this loragen.*upgrade loragen"):
        load_checkpoint(newer)
    bad_json = _copy(path, tmp_path / "bad-json")
    (bad_json / CONFIG_NAME).write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad_json)
    wrong_shape = _copy(path, tmp_path / "wrong-shape")
    meta = json.loads((wrong_shape / CONFIG_NAME).read_text())
    meta["hypernet"]["model"]["d_model"] = 32
    (wrong_shape / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not load"):
        load_checkpoint(wrong_shape)


def test_checkpoint_from_before_the_readout_loads_without_one(trained, tmp_path):
    """A checkpoint written before `model.readout` existed (no such key, no readout tensors) was trained without a
    readout and loads as such instead of failing on missing weights."""
    from safetensors.torch import load_file, save_file

    path, _ = trained
    old = _copy(path, tmp_path / "old")
    meta = json.loads((old / CONFIG_NAME).read_text())
    meta["hypernet"]["model"] = {k: v for k, v in meta["hypernet"]["model"].items() if not k.startswith("readout")}
    (old / CONFIG_NAME).write_text(json.dumps(meta))
    state = {k: v for k, v in load_file(old / WEIGHTS_NAME).items() if not k.startswith("readout.")}
    save_file(state, old / WEIGHTS_NAME)
    model, config, _ = load_checkpoint(old)
    assert model.readout is None and config.model.readout is False
