"""PEFT adapter directory <-> zip archive, with an extractor that treats every archive as hostile.

`pack` zips the files of a PEFT directory (adapter_config.json + adapter_model.safetensors). `unpack` extracts an
uploaded archive into a fresh directory after checking every member up front, then checks the bytes again while
writing (a member's header can lie about its size):

- names: no absolute paths, no ``..``, no backslashes or drive letters, no duplicates (zip-slip);
- kinds: regular files only (no symlinks, devices), no encrypted members;
- types: only ``*.safetensors`` and ``*.json`` (a pickled ``adapter_model.bin`` never reaches disk);
- sizes: at most `max_members` members, each at most `max_member_bytes` uncompressed, a compression ratio of at
  most `max_ratio` (zip bombs), and the same limits enforced on the bytes actually inflated.

On any rejection the target directory is removed, so nothing is left behind. Errors reading the archive are
`ArchiveError` (the client's); errors writing the extracted files, such as a full disk, are the server's and
propagate as the OSError they are (the HTTP layer answers ENOSPC with 507).
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from loragen.bank.errors import AdapterFormatError
from loragen.bank.lora.peft_format import CONFIG_NAME

ALLOWED_SUFFIXES = (".safetensors", ".json")
_CHUNK = 1 << 16


class ArchiveError(AdapterFormatError):
    """An uploaded archive was refused (unsafe paths, links, sizes or file types)."""


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    """What an archive may hold.

    Attributes:
        max_members: the most members (files and folders) an archive may have.
        max_member_bytes: the largest uncompressed size of one member, and of all members together.
        max_ratio: the largest uncompressed/compressed size ratio of one member.
    """

    max_members: int = 8
    max_member_bytes: int = 256 << 20
    max_ratio: float = 200.0

    def __post_init__(self) -> None:
        if self.max_members < 1 or self.max_member_bytes < 1 or self.max_ratio <= 1:
            raise ValueError(f"invalid archive limits {self}: counts and sizes must be >= 1 and max_ratio > 1")


def pack(directory: str | os.PathLike) -> bytes:
    """Zip the regular files directly inside `directory` (a PEFT adapter directory).

    Raises:
        AdapterFormatError: `directory` does not hold adapter_config.json.
    """
    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file():
        raise AdapterFormatError(f"{directory}: missing {CONFIG_NAME}; is this a PEFT adapter directory?")
    buf = io.BytesIO()
    # Weights barely compress; deflate still helps the JSON and costs little at level 1.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.is_symlink() and path.suffix in ALLOWED_SUFFIXES:
                zf.write(path, arcname=path.name)
    return buf.getvalue()


def unpack(archive: bytes | BinaryIO | str | os.PathLike, target: str | os.PathLike, *,
           limits: ArchiveLimits | None = None) -> Path:
    """Extract a PEFT adapter archive into `target` (created; must not exist) and return the adapter directory.

    The adapter directory is `target` itself, or its single sub-folder when the archive wraps the files in one.

    Raises:
        ArchiveError: the archive is unreadable or breaks a rule listed in the module docstring; `target` is
            then removed.
    """
    limits = limits or ArchiveLimits()
    target = Path(target)
    source = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ArchiveError(f"upload is not a readable zip archive ({err}); zip the PEFT adapter directory.") from None
    with zf:
        members = _check_members(zf.infolist(), limits)
        target.mkdir(parents=True, exist_ok=False)
        try:
            for info, rel in members:
                _extract_member(zf, info, target / rel, limits)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return _adapter_root(target)


def _check_members(infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    if len(infos) > limits.max_members:
        raise ArchiveError(f"archive has {len(infos)} members; at most {limits.max_members} are accepted "
                           "(a PEFT adapter is adapter_config.json + adapter_model.safetensors).")
    problems: list[str] = []
    files, seen, total = [], set(), 0
    for info in infos:
        rel = _safe_name(info.filename, problems)
        if rel is None or info.is_dir():
            continue
        if rel in seen:
            problems.append(f"{info.filename!r} appears twice")
        seen.add(rel)
        problems += _member_problems(info, limits)
        total += info.file_size
        files.append((info, rel))
    if total > limits.max_member_bytes:
        problems.append(f"members add up to {total} bytes uncompressed; the limit is {limits.max_member_bytes}")
    if not files and not problems:
        problems.append("archive holds no files")
    if problems:
        raise ArchiveError("archive refused: " + "; ".join(problems[:8]) + ".")
    return files


def _safe_name(name: str, problems: list[str]) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if (not name or name.startswith("/") or "\\" in name or ":" in name or "\x00" in name
            or any(part in ("..", "") for part in name.rstrip("/").split("/"))):
        problems.append(f"{name!r} is not a plain relative path inside the archive (absolute or '..' paths, "
                        "backslashes and drive letters are refused)")
        return None
    return path


def _member_problems(info: zipfile.ZipInfo, limits: ArchiveLimits) -> list[str]:
    problems = []
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded permissions only
    if kind and kind != stat.S_IFREG:
        problems.append(f"{info.filename!r} is not a regular file (symlinks and devices are refused)")
    if info.flag_bits & 0x1:
        problems.append(f"{info.filename!r} is encrypted")
    if not info.filename.endswith(ALLOWED_SUFFIXES):
        problems.append(f"{info.filename!r} is neither .safetensors nor .json (weights are accepted as "
                        "safetensors only; pickles are never loaded)")
    if info.file_size > limits.max_member_bytes:
        problems.append(f"{info.filename!r} is {info.file_size} bytes uncompressed; the limit is "
                        f"{limits.max_member_bytes}")
    if info.file_size and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        problems.append(f"{info.filename!r} inflates {info.file_size / max(info.compress_size, 1):.0f}x; "
                        f"at most {limits.max_ratio:.0f}x is accepted (compression bomb guard)")
    return problems


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, limits: ArchiveLimits) -> None:
    # Reading is the archive's business: a corrupt or lying member is refused as a bad archive. Writing is the
    # server's: an OS error there (a full disk above all) propagates unchanged and is never blamed on the client.
    cap = min(info.file_size, limits.max_member_bytes)  # headers can lie: count the bytes actually inflated
    written = 0
    with _open_member(zf, info) as src, _create(dest, info) as out:
        while chunk := _read_chunk(src, info):
            written += len(chunk)
            if written > cap:
                raise ArchiveError(f"archive refused: {info.filename!r} inflates past its declared size "
                                   f"({info.file_size} bytes) or the limit ({limits.max_member_bytes}).")
            out.write(chunk)


def _create(dest: Path, info: zipfile.ZipInfo) -> BinaryIO:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return open(dest, "xb")
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise ArchiveError(f"archive refused: {info.filename!r} clashes with another member (a file and a folder "
                           "of the same name).") from None


# What reading a corrupt member raises: bad CRC or header, truncation, unsupported or corrupt compression.
_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError)


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    try:
        return zf.open(info)
    except _READ_ERRORS as err:
        raise ArchiveError(f"archive refused: {info.filename!r} could not be extracted ({err}).") from None


def _read_chunk(src: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    try:
        return src.read(_CHUNK)
    except _READ_ERRORS as err:
        raise ArchiveError(f"archive refused: {info.filename!r} could not be extracted ({err}).") from None


def _adapter_root(target: Path) -> Path:
    if (target / CONFIG_NAME).is_file():
        return target
    subdirs = [p for p in target.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / CONFIG_NAME).is_file():
        return subdirs[0]
    shutil.rmtree(target, ignore_errors=True)
    raise ArchiveError(f"archive holds no {CONFIG_NAME} at its top level (or in one top folder); "
                       "zip the PEFT adapter directory itself.")
