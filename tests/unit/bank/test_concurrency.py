"""Threads of one process (the service): readers keep searching while one writer adds and re-indexes."""

from __future__ import annotations

import threading
import time

from loragen.bank.embed import default_encoder
from loragen.bank.store import Bank
from tests.unit.bank._bank_util import minilm_adapter


def test_readers_keep_searching_while_a_writer_adds_and_reindexes(tmp_path):
    with Bank.open(tmp_path / "bank.duckdb", encoder=default_encoder()) as bank:
        for i in range(6):
            bank.add(minilm_adapter(seed=i, r=2, layers=(0,)), description=f"existing adapter {i}")
        bank.reindex()
        stop = threading.Event()
        errors: list[BaseException] = []
        searches = [0]
        new_ids: list[str] = []

        def reader(worker: int) -> None:
            probe = minilm_adapter(seed=worker, r=2, layers=(0,))
            try:
                while not stop.is_set():
                    hits = bank.search_text(f"existing adapter {worker}", k=3) + bank.search_adapter(probe, k=3)
                    assert len(hits) == 6
                    for hit in hits:  # anything a search returns is complete and readable
                        bank.get(hit.id)
                    searches[0] += 1
            except BaseException as err:  # collected and re-raised in the main thread
                errors.append(err)

        def writer() -> None:
            try:
                for i in range(8):
                    new_ids.append(bank.add(minilm_adapter(seed=100 + i, r=2, layers=(0,)),
                                            description=f"new adapter {i}"))
                    if i in (3, 7):
                        bank.reindex()
            except BaseException as err:
                errors.append(err)

        readers = [threading.Thread(target=reader, args=(w,)) for w in range(3)]
        for t in readers:
            t.start()
        w = threading.Thread(target=writer)
        w.start()
        w.join(timeout=120)
        time.sleep(0.2)
        stop.set()
        for t in readers:
            t.join(timeout=30)
        assert not errors, errors
        assert searches[0] >= 10
        assert len(new_ids) == 8 and bank.stats()["indexes"]["text"]["version"] == 3
        assert bank.search_text("new adapter 5", k=1)[0].id == new_ids[5]


def test_two_threads_adding_the_same_adapter_store_it_once(tmp_path):
    with Bank.open(tmp_path / "bank.duckdb", encoder=default_encoder()) as bank:
        adapter = minilm_adapter(seed=1, r=2, layers=(0,))
        ids: list[str] = []
        threads = [threading.Thread(target=lambda: ids.append(bank.add(adapter, on_duplicate="skip")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 1 and len(ids) == 4 and len(bank.adapters()) == 1


def test_a_finished_threads_cursor_is_closed_when_the_next_thread_opens_one(tmp_path):
    """A server's thread pool retires idle threads and starts new ones: their cursors must not pile up."""
    from loragen.bank.store.connection import Database

    db = Database.connect(tmp_path / "bank.duckdb")
    try:
        db.cursor().execute("CREATE TABLE t (x INTEGER)")
        for i in range(20):
            thread = threading.Thread(target=lambda i=i: db.cursor().execute("INSERT INTO t VALUES (?)", [i]))
            thread.start()
            thread.join()
        assert len(db._cursors) <= 2  # this thread's and the last finished one's, not 21
        assert db.cursor().execute("SELECT count(*) FROM t").fetchone()[0] == 20
    finally:
        db.close()
