"""Load test: C concurrent clients x N generate requests against one `loragen serve` on loopback.

Starts the real server in a subprocess (`python -m loragen.api serve`) on a bank it builds in a temporary folder (random
MiniLM adapters for a few dozen task descriptions; pass --bank to use your own), then runs the clients in
threads, each with its own HTTP connection, each sending N `POST /v1/adapters:generate` requests with distinct
descriptions. Reports errors, latency percentiles and throughput, and writes JSON to bench/results/load.json.

Usage::

    .venv/bin/python bench/load.py                      # 8 clients x 50 requests, method retrieve
    .venv/bin/python bench/load.py --clients 4 --requests 20 --method cvae --bank ~/.local/share/loragen/bank.duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "load-test-token-0123"
SUBJECTS = ["Polish", "Czech", "Spanish", "Portuguese", "German", "Dutch", "a person", "a city", "a date", "a number",
            "a positive review", "a negative review", "sport news", "politics news", "an email", "a phone number"]


def build_bank(path: Path, n_tasks: int = 32) -> None:
    """A bank of `n_tasks` random MiniLM adapters with distinct descriptions, re-indexed."""
    from loragen.bank.base_model import DEFAULT_BASE_MODEL, load_base_model
    from loragen.bank.store import Bank
    from tests._models import random_adapter

    model = load_base_model()
    with Bank.open(path) as bank:
        for i in range(n_tasks):
            a, b = SUBJECTS[i % len(SUBJECTS)], SUBJECTS[(i * 7 + 3) % len(SUBJECTS)]
            adapter = random_adapter(model, ("query", "value"), r=4, alpha=8.0, seed=i, scale=0.05,
                                     base_model=DEFAULT_BASE_MODEL)
            bank.add(adapter, description=f"label 0 if the text is {a}, label 1 if it is {b} (variant {i})")
        bank.reindex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bank: Path, port: int, method: str, workers: int) -> subprocess.Popen:
    env = {**os.environ, "LORAGEN_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "loragen.api", "serve", "--port", str(port), "--bank", str(bank), "--methods", method,
           "--reindex-interval", "0", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy within 180 s")


def client_loop(url: str, client_id: int, n: int, method: str, latencies: list, errors: list) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300) as http:
        for i in range(n):
            a, b = SUBJECTS[(client_id + i) % len(SUBJECTS)], SUBJECTS[(3 * i + client_id + 1) % len(SUBJECTS)]
            body = {"description": f"client {client_id} request {i}: is the text {a} (label 0) or {b} (label 1)?",
                    "method": method, "seed": i}
            start = time.perf_counter()
            try:
                response = http.post("/v1/adapters:generate", json=body)
                ok = response.status_code == 200
                detail = response.text[:300]
            except httpx.HTTPError as err:
                ok, detail = False, repr(err)
            latencies.append(time.perf_counter() - start)
            if not ok:
                errors.append(detail)


def run_load(url: str, clients: int, requests: int, method: str) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=client_loop, args=(url, c, requests, method, latencies, errors))
               for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    pct = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {
        "requests": len(latencies), "errors": len(errors), "error_samples": errors[:5],
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000, "wall_s": wall, "throughput_rps": len(latencies) / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--method", default="retrieve", choices=["retrieve", "cvae", "abmll"])
    parser.add_argument("--workers", type=int, default=2, help="server worker threads")
    parser.add_argument("--bank", type=Path, default=None, help="existing bank to serve (default: build a temp one)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loragen-load-") as tmp:
        bank = args.bank
        if bank is None:
            bank = Path(tmp) / "bank.duckdb"
            print("building a 32-adapter bank ...", flush=True)
            build_bank(bank)
        port = free_port()
        server = start_server(bank, port, args.method, args.workers)
        try:
            url = f"http://127.0.0.1:{port}"
            run_load(url, 1, 3, args.method)  # warm-up: first-request costs (encoder, caches) are not measured
            print(f"{args.clients} clients x {args.requests} '{args.method}' requests ...", flush=True)
            result = run_load(url, args.clients, args.requests, args.method)
        finally:
            server.terminate()
            server.wait(timeout=60)
    result = {"clients": args.clients, "requests_per_client": args.requests, "method": args.method,
              "server_workers": args.workers, **result,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_1m_at_end": os.getloadavg()[0]},
              "command": " ".join(["bench/load.py", *sys.argv[1:]])}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()
                      if k not in ("machine", "error_samples")}))
    print(f"wrote {args.output}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
