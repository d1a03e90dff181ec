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


def test_corrupt_compressed_data_is_a_bad_archive(tmp_path):
    data = bytearray(_zip({"adapter_config.json": bytes(range(256)) * 40}))
    start = 30 + len("adapter_config.json")  # the local header, then the deflate stream
    data[start:start + 64] = b"\xff" * 64
    with pytest.raises(ArchiveError, match="could not be extracted"):
        unpack(bytes(data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_and_a_folder_of_the_same_name_is_a_bad_archive(tmp_path):
    with pytest.raises(ArchiveError, match="clashes"):
        unpack(_zip({"a.json": b"{}", "a.json/b.json": b"{}"}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_the_servers_error_not_the_archives(tmp_path, monkeypatch):
    """Writing goes to /dev/full (a real ENOSPC from a real write): the OSError propagates for the HTTP layer to
    answer 507, instead of an ArchiveError that blames the client; nothing is left behind."""
    import builtins
    import errno

    from loragen.api import archive

    real_open = builtins.open
    monkeypatch.setattr(archive, "open", lambda f, mode="r", *a, **k: real_open("/dev/full", "wb") if mode == "xb"
                        else real_open(f, mode, *a, **k), raising=False)
    with pytest.raises(OSError) as err:
        unpack(pack(save_peft(_adapter(), tmp_path / "src")), tmp_path / "out")
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, ArchiveError)
    assert not (tmp_path / "out").exists()
