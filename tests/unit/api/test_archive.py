"""The archive extractor treats every zip as hostile; a PEFT directory round-trips through pack/unpack."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
import torch

from loragen.api.archive import ArchiveError, ArchiveLimits, pack, unpack
from loragen.bank.lora import LoraAdapter, load_peft, save_peft


def _adapter() -> LoraAdapter:
    g = torch.Generator().manual_seed(0)
    return LoraAdapter(base_model="m", r=2, lora_alpha=4.0, lora_A={"l.q": torch.randn(2, 8, generator=g)},
                       lora_B={"l.q": torch.randn(8, 2, generator=g)})


def _zip(members: dict[str, bytes], mode: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_round_trip(tmp_path):
    src = save_peft(_adapter(), tmp_path / "src")
    out = unpack(pack(src), tmp_path / "out")
    assert load_peft(out).sha256() == load_peft(src).sha256()


def test_single_top_folder_is_accepted(tmp_path):
    src = save_peft(_adapter(), tmp_path / "src")
    members = {f"my-adapter/{p.name}": p.read_bytes() for p in src.iterdir()}
    assert unpack(_zip(members), tmp_path / "out") == tmp_path / "out" / "my-adapter"


@pytest.mark.parametrize(
    ("members", "mode", "words"),
    [
        ({"../x.json": b"{}"}, None, "'..'"),
        ({"a/../../x.json": b"{}"}, None, "'..'"),
        ({"/abs.json": b"{}"}, None, "absolute"),
        ({"C:/x.json": b"{}"}, None, "drive"),
        ({"x.json": b"target"}, stat.S_IFLNK | 0o777, "symlink"),
        ({"model.pt": b"\x80\x04."}, None, "neither .safetensors nor .json"),
        ({"README.md": b"hi"}, None, "neither"),
        ({"bomb.json": b"0" * 200_000}, None, "compression bomb"),
        ({f"{i}.json": b"{}" for i in range(9)}, None, "members"),
    ],
)
def test_refused_and_nothing_left(tmp_path, members, mode, words):
    with pytest.raises(ArchiveError, match="(?i)" + __import__("re").escape(words)):
        unpack(_zip(members, mode), tmp_path / "out", limits=ArchiveLimits(max_members=8))
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.json").exists()


def test_size_lies_are_caught_while_inflating(tmp_path):
    data = _zip({"adapter_config.json": b"{" + b" " * 5000 + b"}"})
    # Rewrite both headers to claim a tiny size: the bytes actually inflated must still be capped.
    data = data.replace((5002).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    with pytest.raises(ArchiveError):
        unpack(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_member_limit_and_no_config(tmp_path):
    with pytest.raises(ArchiveError, match="uncompressed"):
        unpack(_zip({"a.json": b"x" * 2000}), tmp_path / "o1", limits=ArchiveLimits(max_member_bytes=1000))
    with pytest.raises(ArchiveError, match="adapter_config.json"):
        unpack(_zip({"other.json": b"{}"}), tmp_path / "o2")
    with pytest.raises(ArchiveError, match="zip"):
        unpack(b"not a zip", tmp_path / "o3")
    assert not any(tmp_path.iterdir())
