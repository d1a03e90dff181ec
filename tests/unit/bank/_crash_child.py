"""Child process for the crash-safety tests: works on a bank and stops at a chosen point until it is SIGKILLed.

    python -m tests.unit.bank._crash_child import BANK WORKDIR PAUSE_AT
    python -m tests.unit.bank._crash_child reindex-renamed BANK
    python -m tests.unit.bank._crash_child reindex-writing BANK

Each committed adapter is printed as "committed <id>"; "paused" is printed once the child sits at the pause point
(inside an open transaction, or between writing an index file and recording it), where the parent kills it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import loragen.bank.store.adapters
import loragen.bank.store.indexes
import loragen.bank.store.vector_index
from loragen.bank.lora import save_peft
from loragen.bank.store import Bank
from tests.unit.bank._bank_util import minilm_adapter


def _pause() -> None:
    print("paused", flush=True)
    time.sleep(600)


def import_loop(path: Path, workdir: Path, pause_at: int) -> None:
    real = loragen.bank.store.adapters.insert_embedding
    count = {"n": 0}

    def insert_then_maybe_pause(cur, *args):
        real(cur, *args)
        count["n"] += 1
        if count["n"] == 2 * pause_at + 1:  # adapter `pause_at`: row and tensors written, transaction open
            _pause()

    loragen.bank.store.adapters.insert_embedding = insert_then_maybe_pause
    with Bank.open(path) as b:
        for i in range(1000):
            src = save_peft(minilm_adapter(seed=1000 + i), workdir / f"a{i}")
            adapter_id = b.import_peft(src, description=f"crash test adapter {i}")
            print(f"committed {adapter_id}", flush=True)


def reindex(path: Path, where: str) -> None:
    if where == "renamed":  # the new file is in place but DuckDB does not point to it yet
        real = loragen.bank.store.indexes.write_index

        def write_then_pause(index, target):
            real(index, target)
            _pause()

        loragen.bank.store.indexes.write_index = write_then_pause
    else:  # halfway through writing the temporary file
        real_write = loragen.bank.store.vector_index.faiss.write_index

        def half_write(index, tmp):
            real_write(index, tmp)
            with open(tmp, "r+b") as f:
                f.truncate(max(1, Path(tmp).stat().st_size // 2))
            _pause()

        loragen.bank.store.vector_index.faiss.write_index = half_write
    with Bank.open(path) as b:
        b.reindex()


if __name__ == "__main__":
    mode, bank_path = sys.argv[1], Path(sys.argv[2])
    if mode == "import":
        import_loop(bank_path, Path(sys.argv[3]), int(sys.argv[4]))
    else:
        reindex(bank_path, mode.removeprefix("reindex-"))
