"""Task records in the bank's `tasks` table, and the examples stored with a user's tasks (`task_examples`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from loragen.bank.errors import NotFoundError
from loragen.bank.records import TaskRecord
from loragen.bank.store.connection import Database

SPLITS = ("train", "val", "test")
StoredExample = tuple[str, int | str]  # (text, label index) or (input, output)

_COLUMNS = "name, description, labels, paraphrases, heldout_paraphrases, family, split, data_ref"


def _js(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _row(t: TaskRecord) -> list[str]:
    return [t.name, t.description, _js(list(t.labels)), _js(list(t.paraphrases)), _js(list(t.heldout_paraphrases)),
            t.family, t.split, _js(t.data_ref)]


def _from_row(row: tuple) -> TaskRecord:
    name, description, labels, paraphrases, heldout, family, split, data_ref = row
    return TaskRecord(
        name=name,
        description=description,
        labels=tuple(json.loads(labels)),
        paraphrases=tuple(json.loads(paraphrases)),
        family=family,
        split=split,
        data_ref=json.loads(data_ref),
        heldout_paraphrases=tuple(json.loads(heldout)),
    )


class TaskTable:
    """The bank's tasks (see `Bank.add_tasks`, `Bank.get_task`, `Bank.tasks`)."""

    def __init__(self, db: Database):
        self._db = db
        # split (None: all) -> its tasks, as last read; every write here clears it (this process is the bank's only
        # writer: DuckDB locks the file). A service's retrieval asks for the held-out tasks on every request.
        self._listed: dict[str | None, tuple[TaskRecord, ...]] = {}
        self._writes = 0  # bumped by every write: a list read while a write committed is not remembered
        self._listed_lock = threading.Lock()

    def add(self, tasks: Iterable[TaskRecord]) -> int:
        """Insert or replace `tasks` in one transaction; returns how many.

        Raises:
            ValueError: a task without a name or a description (nothing is written).
        """
        rows = [_row(t) for t in tasks]
        for row in rows:
            if not row[0] or not row[1]:
                raise ValueError(f"a task needs a name and a description, got name={row[0]!r}")
        try:
            with self._db.transaction() as cur:
                if rows:
                    cur.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        finally:
            self._forget_listed()
        return len(rows)

    def get(self, name: str) -> TaskRecord:
        """The task called `name`.

        Raises:
            NotFoundError: no such task.
        """
        task = self.find(name)
        if task is None:
            raise NotFoundError(f"no task named {name!r} in the bank {self._db.path}; list them with bank.tasks().")
        return task

    def find(self, name: str | None) -> TaskRecord | None:
        """The task called `name`, or None when there is none (or `name` is None)."""
        if name is None:
            return None
        row = self._db.cursor().execute(f"SELECT {_COLUMNS} FROM tasks WHERE name = ?", [name]).fetchone()
        return _from_row(row) if row is not None else None

    def records(self, split: str | None = None) -> list[TaskRecord]:
        """All tasks (of one split if given), sorted by name."""
        with self._listed_lock:
            listed, writes = self._listed.get(split), self._writes
        if listed is None:
            sql = f"SELECT {_COLUMNS} FROM tasks" + (" WHERE split = ?" if split else "") + " ORDER BY name"
            listed = tuple(_from_row(r) for r in self._db.cursor().execute(sql, [split] if split else []).fetchall())
            with self._listed_lock:
                if self._writes == writes:
                    self._listed[split] = listed
        return list(listed)

    def _forget_listed(self) -> None:
        with self._listed_lock:
            self._writes += 1
            self._listed.clear()

    def set_data(self, name: str, splits: dict[str, list[StoredExample]]) -> int:
        """Store `name`'s examples (replacing any stored before) in one transaction; returns how many.

        Args:
            name: a task already in the bank.
            splits: split ("train", "val", "test") -> (input, label index) or (input, output text) pairs.

        Raises:
            NotFoundError: no such task.
            ValueError: an unknown split, or an example that is neither kind (nothing is written).
        """
        self.get(name)
        rows = _example_rows(name, splits)
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM task_examples WHERE task = ?", [name])
            if rows:
                cur.executemany("INSERT INTO task_examples VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def put(self, task: TaskRecord, splits: dict[str, list[StoredExample]]) -> int:
        """Insert or replace `task` together with its examples (replacing any stored before), in one transaction.

        Returns:
            How many examples were stored.

        Raises:
            ValueError: a task without a name or description, an unknown split or a malformed example (nothing is
                written).
        """
        row = _row(task)
        if not row[0] or not row[1]:
            raise ValueError(f"a task needs a name and a description, got name={row[0]!r}")
        rows = _example_rows(task.name, splits)
        try:
            with self._db.transaction() as cur:
                cur.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                cur.execute("DELETE FROM task_examples WHERE task = ?", [task.name])
                if rows:
                    cur.executemany("INSERT INTO task_examples VALUES (?, ?, ?, ?, ?, ?)", rows)
        finally:  # after the commit: a read meanwhile cannot bring the old list back
            self._forget_listed()
        return len(rows)

    def counts(self) -> dict[str, dict[str, int]]:
        """Stored examples per task and split (tasks without stored examples are absent)."""
        out: dict[str, dict[str, int]] = {}
        sql = "SELECT task, split, count(*) FROM task_examples GROUP BY task, split"
        for task, split, n in self._db.cursor().execute(sql).fetchall():
            out.setdefault(task, dict.fromkeys(SPLITS, 0))[split] = int(n)
        return out

    def data(self, name: str) -> dict[str, list[StoredExample]] | None:
        """`name`'s stored examples by split (every split present, possibly empty), or None when none are stored."""
        rows = self._db.cursor().execute(
            "SELECT split, input, label, output FROM task_examples WHERE task = ? ORDER BY split, position",
            [name]).fetchall()
        if not rows:
            return None
        out: dict[str, list[StoredExample]] = {split: [] for split in SPLITS}
        for split, text, label, output in rows:
            out[split].append((text, int(label) if label is not None else output))
        return out


def _example_rows(name: str, splits: dict[str, list[StoredExample]]) -> list[list]:
    """task_examples rows for `name`'s examples, after checking every split name and example.

    Raises:
        ValueError: an unknown split, or an example that is neither (text, label index) nor (input, output).
    """
    rows = []
    for split, examples in splits.items():
        if split not in SPLITS:
            raise ValueError(f"task {name!r}: unknown split {split!r}; use {list(SPLITS)}")
        for i, (text, target) in enumerate(examples):
            if not isinstance(text, str) or isinstance(target, bool) or not isinstance(target, (int, str)):
                raise ValueError(f"task {name!r}, {split}[{i}]: expected (text, label index) or (input, output) "
                                 f"strings, got ({type(text).__name__}, {type(target).__name__})")
            rows.append([name, split, i, text, target if isinstance(target, int) else None,
                         target if isinstance(target, str) else None])
    return rows
