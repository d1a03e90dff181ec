"""The service reads a generator's trust file on every request: it is parsed once per file version."""

from __future__ import annotations

import os

from loragen.api.trust import load_trust
from loragen.meta.trust import TrustModel
from tests.unit.meta.test_trust import _synthetic


def test_trust_file_parsed_once_per_version(tmp_path):
    rows, acc, groups = _synthetic()
    path = TrustModel.fit(rows, acc, groups, meta={"method": "cvae"}).save(tmp_path / "trust.json")
    first = load_trust(path)
    assert first is not None and load_trust(path) is first  # same version: the parsed model is reused
    TrustModel.fit(rows[:60], acc[:60], groups[:60], meta={"method": "abmll"}).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    second = load_trust(path)
    assert second is not first and second.meta["method"] == "abmll"  # a rewritten file is read again
    assert load_trust(tmp_path / "missing.json") is None and load_trust(None) is None
