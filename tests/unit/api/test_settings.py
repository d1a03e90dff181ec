"""Service settings check themselves and take LORAGEN_* environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from loragen.api.settings import Settings


def test_env_overrides_and_explicit_wins(tmp_path):
    env = {"LORAGEN_TOKEN": "secret-token", "LORAGEN_MAX_UPLOAD_BYTES": "1024", "LORAGEN_METHODS": "retrieve, cvae",
           "LORAGEN_MERGE_ROOT": str(tmp_path), "LORAGEN_REINDEX_INTERVAL_S": "60"}
    s = Settings.from_env(env, max_upload_bytes=2048)
    assert s.token == "secret-token" and s.max_upload_bytes == 2048 and s.methods == ("retrieve", "cvae")
    assert s.merge_root == Path(tmp_path) and s.reindex_interval_s == 60.0


def test_errors_name_every_bad_field():
    with pytest.raises(ValueError) as err:
        Settings(max_request_bytes=0, methods=("magic",), token="short", reindex_interval_s=-1, bank_memory_limit="lots")
    message = str(err.value)
    for field in ("max_request_bytes", "methods", "token", "reindex_interval_s", "LORAGEN_BANK_MEMORY_LIMIT"):
        assert field in message


def test_bad_number_in_env_names_the_variable():
    with pytest.raises(ValueError, match="LORAGEN_MAX_UPLOAD_BYTES"):
        Settings.from_env({"LORAGEN_MAX_UPLOAD_BYTES": "lots"})


def test_frozen():
    with pytest.raises(AttributeError):
        Settings().token = "x" * 10  # type: ignore[misc]
