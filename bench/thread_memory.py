"""Memory of a bank used from short-lived threads, as a server's thread pool uses it (idle threads retired, new ones
started): each round starts --threads threads that each read a few adapters, then reports the process's resident
memory and how many DuckDB cursors the bank holds. Flat memory and a cursor count that stays small mean finished
threads' cursors are released.

Usage::

    .venv/bin/python bench/thread_memory.py                       # 4 rounds of 100 threads, a temporary bank
    .venv/bin/python bench/thread_memory.py --output bench/results/thread_memory.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=100, help="threads started (one after another) per round")
    parser.add_argument("--output", type=Path, default=None, help="write the rounds as JSON here")
    args = parser.parse_args()

    from loragen.bank.embed import default_encoder
    from loragen.bank.store import Bank
    from tests.unit.bank._bank_util import minilm_adapter

    rounds = []
    with tempfile.TemporaryDirectory(prefix="loragen-threads-") as tmp, \
            Bank.open(Path(tmp) / "bank.duckdb", encoder=default_encoder()) as bank:
        ids = [bank.add(minilm_adapter(seed=i), description=f"adapter {i}") for i in range(5)]

        def work() -> None:
            for adapter_id in ids:
                bank.get(adapter_id)
                bank.record(adapter_id)

        work()
        gc.collect()
        start = rss_mb()
        print(f"start: rss {start:.1f} MB", flush=True)
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.threads):
                thread = threading.Thread(target=work)
                thread.start()
                thread.join()
            gc.collect()
            row = {"round": r, "threads_so_far": (r + 1) * args.threads, "rss_mb": round(rss_mb(), 1),
                   "cursors": len(bank._db._cursors), "seconds": round(time.perf_counter() - t0, 2)}
            rounds.append(row)
            print(json.dumps(row), flush=True)
    report = {"rss_start_mb": round(start, 1), "rounds": rounds,
              "rss_growth_mb_per_100_threads": round((rounds[-1]["rss_mb"] - start) * 100 /
                                                     rounds[-1]["threads_so_far"], 2),
              "command": " ".join(["bench/thread_memory.py", *sys.argv[1:]]),
              "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(json.dumps({k: report[k] for k in ("rss_start_mb", "rss_growth_mb_per_100_threads")}))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
