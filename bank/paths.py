"""Every default location loragen reads or writes, in one place.

Everything lives under one home folder: ``$LORAGEN_HOME`` when it is set, else the platform's user data directory
for loragen (``~/.local/share/loragen`` on Linux). The CLI, the SDK and the service all ask this module.
"""

from __future__ import annotations

import os
from pathlib import Path

BANK_FILE = "bank.duckdb"


def home() -> Path:
    """``$LORAGEN_HOME``, else the platform's user data directory for loragen."""
    value = os.environ.get("LORAGEN_HOME")
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("loragen"))


def bank_path() -> Path:
    """The default bank: ``<home>/bank.duckdb``."""
    return home() / BANK_FILE


def index_dir(bank_file: Path) -> Path:
    """Where a bank's FAISS indexes live: beside its DuckDB file, in ``<bank file>.indexes/``."""
    return Path(str(bank_file) + ".indexes")


def checkpoint_dir(method: str) -> Path:
    """The default checkpoint of a trained generator (``hypernet`` or ``meta``): ``<home>/<method>``."""
    return home() / method


def merge_root() -> Path:
    """The only folder under which the service writes merged models: ``<home>/merged``."""
    return home() / "merged"


def demo_home(base_model: str | None = None) -> Path:
    """The demo's working folder: ``<home>/demo`` (the MiniLM demo), ``<home>/demo-<base_model>`` for another base
    model's demo (``loragen demo --base-model smollm2``: ``<home>/demo-smollm2``)."""
    return home() / (f"demo-{base_model}" if base_model else "demo")


SHIPPED_ENV = "LORAGEN_SHIPPED_DIR"


def shipped_root() -> Path:
    """Where the generators shipped with loragen live: ``$LORAGEN_SHIPPED_DIR`` when set (tests, a release build
    under review), else the package data folder ``loragen/bank/shipped``.

    Layout: ``<root>/<base model id, "/" as "__">/{hypernet,meta}/`` (checkpoints) and ``.../manifest.json``
    (what built them and their evaluation summary), written by `loragen release build`.
    """
    value = os.environ.get(SHIPPED_ENV)
    return Path(value).expanduser() if value else Path(__file__).resolve().parent / "shipped"


def shipped_base_dir(base_model: str) -> Path:
    """The shipped folder of one base model (its hub id or canonical id): ``<shipped_root>/<id, "/" as "__">``."""
    return shipped_root() / base_model.replace("/", "__")


def shipped_dir(method: str, base_model: str) -> Path:
    """The shipped checkpoint of a generator (``hypernet`` or ``meta``) for a base model."""
    return shipped_base_dir(base_model) / method
