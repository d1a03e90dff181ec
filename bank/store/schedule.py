"""Scheduled re-indexing of a bank with APScheduler (the service starts it; cron/systemd use `loragen bank reindex`).

Usage::

    scheduler = start_reindex_schedule(bank, ReindexSchedule(interval_s=3600))
    ...
    scheduler.shutdown()

At most one run at a time: the job has `max_instances=1` and `coalesce=True` (missed runs fold into one), and
`Bank.reindex` itself holds a lock, so a manual re-index in the same process waits for a scheduled one.
Every run is logged with its duration and the number of vectors indexed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loragen.bank.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from loragen.bank.store.bank import Bank

logger = logging.getLogger(__name__)
JOB_ID = "loragen-bank-reindex"


@dataclass(frozen=True, kw_only=True)
class ReindexSchedule:
    """When to re-index: exactly one of `interval_s` or `cron`.

    Attributes:
        interval_s: seconds between runs.
        cron: a standard 5-field crontab expression ("minute hour day month weekday"), e.g. "0 3 * * *".
        timezone: timezone the cron expression is read in.
    """

    interval_s: float | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.interval_s is None) == (self.cron is None):
            raise ConfigError(
                f"ReindexSchedule needs exactly one of interval_s or cron, got interval_s={self.interval_s!r}, "
                f"cron={self.cron!r}"
            )
        if self.interval_s is not None and self.interval_s <= 0:
            raise ConfigError(f"ReindexSchedule.interval_s must be > 0, got {self.interval_s!r}")
        if self.cron is not None:
            self.trigger()  # parse now, so a bad expression fails where the config is read

    @classmethod
    def parse(cls, spec: str, timezone: str = "UTC") -> ReindexSchedule:
        """From one config string: a number of seconds ("3600", "90.5") or a 5-field crontab ("0 3 * * *")."""
        spec = spec.strip()
        try:
            return cls(interval_s=float(spec), timezone=timezone)
        except ValueError as err:
            if "interval_s" in str(err):
                raise
        return cls(cron=spec, timezone=timezone)

    def trigger(self):
        """The APScheduler trigger for this schedule.

        Raises:
            ConfigError: the cron expression does not parse (the message quotes it).
        """
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.interval_s is not None:
            return IntervalTrigger(seconds=self.interval_s, timezone=self.timezone)
        try:
            return CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        except ValueError as err:
            raise ConfigError(
                f"ReindexSchedule.cron {self.cron!r} is not a 5-field crontab expression ({err}); "
                "example: '0 3 * * *' (daily at 03:00)"
            ) from None


def run_reindex(bank: Bank) -> dict[str, Any]:
    """One re-index run, logged with its duration and size; returns the bank's per-space info."""
    start = time.perf_counter()
    info = bank.reindex()
    duration = time.perf_counter() - start
    sizes = ", ".join(f"{space}={v.get('ntotal', 0)} ({v.get('method')})" for space, v in info.items())
    logger.info("bank re-index of %s done in %.2f s: %s", bank.path, duration, sizes)
    return info


def start_reindex_schedule(bank: Bank, schedule: ReindexSchedule) -> BackgroundScheduler:
    """Start a background scheduler that re-indexes `bank` on `schedule`; call `.shutdown()` to stop it."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=schedule.timezone)
    scheduler.add_job(
        run_reindex,
        trigger=schedule.trigger(),
        args=[bank],
        id=JOB_ID,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )
    scheduler.start()
    logger.info("bank re-index scheduled (%s)", schedule)
    return scheduler
