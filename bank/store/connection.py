"""The bank's DuckDB file: one connection, a cursor per thread, serialised write transactions, meta keys.

DuckDB lets only one process open a file read-write; `Database.connect` turns that lock error into a `BankError`
saying what to do. Within the process, threads share the connection through their own cursors, and writes take
one lock, because DuckDB transactions belong to a cursor.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from loragen.bank.errors import BankError
from loragen.bank.store.schema import CONNECTION_CONFIG

MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)  # what DuckDB accepts


class Database:
    """A DuckDB file shared by the threads of one process. Create it with `Database.connect`."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection):
        self.path = path
        self._con = con
        self._local = threading.local()
        # thread -> its cursor; a dead thread's cursor is closed when the next one is made (a server's thread pool
        # retires idle threads and starts new ones: kept forever, their cursors grew the process ~80 KB each)
        self._cursors: dict[threading.Thread, duckdb.DuckDBPyConnection] = {}
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.RLock()  # one writer at a time (DuckDB transactions are per cursor)
        self.closed = False

    @classmethod
    def connect(cls, path: str | os.PathLike, memory_limit: str | None = None) -> Database:
        """Open (or create) the DuckDB file at `path` with the bank's connection settings.

        Args:
            memory_limit: DuckDB's memory limit, e.g. "256MB" (None: `schema.DEFAULT_MEMORY_LIMIT`).

        Raises:
            BankError: the file is open read-write in another process, is not a DuckDB file, or `memory_limit` is
                not a size DuckDB understands.
        """
        path = Path(path)
        if memory_limit is not None and not MEMORY_SIZE.fullmatch(memory_limit.strip()):
            raise BankError(f"cannot open the bank {path}: memory_limit {memory_limit!r} is not a size; give a number "
                            "and a unit, e.g. '256MB' or '1GB'")
        config = {**CONNECTION_CONFIG, **({"memory_limit": memory_limit.strip()} if memory_limit else {})}
        try:
            con = duckdb.connect(str(path), config=config)
        except duckdb.IOException as err:
            if "lock" not in str(err).lower():
                raise BankError(f"cannot open the bank {path}: {err}") from None
            raise BankError(
                f"cannot open the bank {path}: {err}. DuckDB allows one read-write process per file: stop the "
                "other loragen process (or the service) using it, or talk to the service instead."
            ) from None
        except duckdb.Error as err:
            raise BankError(f"cannot open the bank {path}: {err}") from None
        return cls(path, con)

    def close(self) -> None:
        """Close every cursor and the connection (a checkpoint folds the write-ahead log into the file)."""
        if self.closed:
            return
        self.closed = True
        with self._cursors_lock:
            for cur in self._cursors.values():
                _close(cur)
            self._cursors.clear()
        self._con.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (created on first use).

        Raises:
            BankError: the bank is closed.
        """
        if self.closed:
            raise BankError(f"the bank {self.path} is closed")
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
            with self._cursors_lock:
                for thread in [t for t in self._cursors if not t.is_alive()]:
                    _close(self._cursors.pop(thread))
                self._cursors[threading.current_thread()] = cur
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A serialised write transaction on this thread's cursor; rolled back on any error."""
        with self._write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        """A bank setting from the `meta` table (None when unset)."""
        row = self.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None


def _close(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.close()
    except duckdb.Error:
        pass
