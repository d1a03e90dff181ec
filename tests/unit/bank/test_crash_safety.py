"""Crash safety: a bank process SIGKILLed mid-import or mid-reindex leaves a bank that opens, keeps every committed
adapter, and holds no half adapter or half index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loragen.bank.embed import default_encoder
from loragen.bank.store import Bank, index_dir
from tests.unit.bank._bank_util import minilm_adapter

ROOT = Path(__file__).resolve().parents[3]


def _run_until_paused(*args: str) -> list[str]:
    """Start the child, read its lines until it says "paused", SIGKILL it; return the lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.unit.bank._crash_child", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "paused":
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        err = proc.stderr.read()
    assert lines and lines[-1] == "paused", f"child never reached its pause point:\n{err[-3000:]}"
    return lines


def _assert_consistent(bank: Bank) -> None:
    """Every adapter complete (tensors, embeddings, checksums); nothing that belongs to no adapter."""
    cur = bank._cur()
    half = cur.execute(
        "SELECT a.id FROM adapters a LEFT JOIN tensors t ON t.adapter_id = a.id AND t.variant = 'canonical' "
        "GROUP BY a.id, a.n_modules HAVING count(t.module) != 2 * a.n_modules"
    ).fetchall()
    assert half == []
    for table in ("tensors", "embeddings"):
        orphans = cur.execute(f"SELECT count(*) FROM {table} WHERE adapter_id NOT IN (SELECT id FROM adapters)")
        assert orphans.fetchone()[0] == 0
    no_weight = cur.execute("SELECT count(*) FROM adapters WHERE id NOT IN "
                            "(SELECT adapter_id FROM embeddings WHERE space = 'weight')").fetchone()[0]
    assert no_weight == 0
    for rec in bank.adapters():
        bank.get(rec.id)  # checksums verified


def test_sigkill_in_the_middle_of_an_import_loop(tmp_path):
    path = tmp_path / "bank.duckdb"
    lines = _run_until_paused("import", str(path), str(tmp_path), "3")
    committed = [line.split()[1] for line in lines if line.startswith("committed")]
    assert len(committed) == 3
    with Bank.open(path, encoder=default_encoder()) as bank:
        assert [r.id for r in bank.adapters()] == committed  # the 4th, killed mid-transaction, is absent
        _assert_consistent(bank)
        assert bank.search_text("crash test adapter 2", k=1)[0].id == committed[2]
        bank.add(minilm_adapter(seed=1003), description="after the crash")  # the killed one can be added again


@pytest.mark.parametrize("where", ["renamed", "writing"])
def test_sigkill_in_the_middle_of_reindex(tmp_path, where):
    path = tmp_path / "bank.duckdb"
    with Bank.open(path, encoder=default_encoder()) as bank:
        ids = [bank.add(minilm_adapter(seed=i), description=f"adapter number {i}") for i in range(4)]
        bank.reindex()
        ids.append(bank.add(minilm_adapter(seed=9), description="added after the first re-index"))
    _run_until_paused(f"reindex-{where}", str(path))
    leftovers = sorted(p.name for p in index_dir(path).iterdir())
    assert len(leftovers) > 2  # the killed re-index left a file behind (renamed v2 or a temporary file)
    with Bank.open(path, encoder=default_encoder()) as bank:
        assert sorted(p.name for p in index_dir(path).iterdir()) == ["text-v1.faiss", "weight-v1.faiss"]
        stats = bank.stats()["indexes"]
        assert stats["text"]["version"] == 1 and (stats["text"]["indexed"], stats["text"]["delta"]) == (4, 1)
        assert [r.id for r in bank.adapters()] == ids
        _assert_consistent(bank)
        assert bank.search_text("added after the first re-index", k=1)[0].id == ids[4]
        assert bank.reindex()["text"]["version"] == 2
