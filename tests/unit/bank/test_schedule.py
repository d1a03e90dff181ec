"""Scheduled re-indexing: config validation, runs on an interval, never two at once."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from loragen.bank.embed import default_encoder
from loragen.bank.store.schedule import ReindexSchedule, start_reindex_schedule
from loragen.bank.store import Bank
from tests.unit.bank._bank_util import minilm_adapter


def test_schedule_config_is_validated():
    with pytest.raises(ValueError, match="exactly one of interval_s or cron"):
        ReindexSchedule()
    with pytest.raises(ValueError, match="exactly one"):
        ReindexSchedule(interval_s=10, cron="0 3 * * *")
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        ReindexSchedule(interval_s=0)
    with pytest.raises(ValueError, match="'61 3 \\* \\* \\*' is not a 5-field crontab"):
        ReindexSchedule(cron="61 3 * * *")
    assert "CronTrigger" in type(ReindexSchedule(cron="0 3 * * *").trigger()).__name__
    assert ReindexSchedule.parse("3600") == ReindexSchedule(interval_s=3600.0)
    assert ReindexSchedule.parse(" 0 3 * * * ") == ReindexSchedule(cron="0 3 * * *")
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        ReindexSchedule.parse("-5")
    with pytest.raises(ValueError, match="'every hour' is not a 5-field crontab"):
        ReindexSchedule.parse("every hour")


def test_interval_schedule_reindexes_one_run_at_a_time(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="loragen.bank.store.schedule")
    with Bank.open(tmp_path / "bank.duckdb", encoder=default_encoder()) as bank:
        bank.add(minilm_adapter(seed=0, r=2, layers=(0,)), description="scheduled")
        running, overlaps = [0], [0]
        real = bank._indexes.reindex_space

        def slow_reindex_space(space):  # slower than the interval, so runs would overlap if allowed
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
            time.sleep(0.3)
            try:
                return real(space)
            finally:
                running[0] -= 1

        bank._indexes.reindex_space = slow_reindex_space
        scheduler = start_reindex_schedule(bank, ReindexSchedule(interval_s=0.1))
        manual = threading.Thread(target=bank.reindex)  # a manual run in the same process waits its turn
        manual.start()
        deadline = time.time() + 20
        while bank.stats()["indexes"]["text"]["version"] in (None, 1, 2) and time.time() < deadline:
            time.sleep(0.05)
        scheduler.shutdown(wait=True)
        manual.join()
        assert bank.stats()["indexes"]["text"]["version"] >= 3
        assert overlaps[0] == 1
        assert "bank re-index of" in caplog.text and "text=1 (flat)" in caplog.text
