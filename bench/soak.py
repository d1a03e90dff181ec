"""Soak: a bounded loopback run of a real `loragen serve` under a steady mix of requests, watching its memory.

Starts `python -m loragen.api serve` in a subprocess (token set) on a private copy of a bank (a temporary 32-adapter
bank by default; --bank or --home for yours), then for --seconds (default 600) runs N client threads, each picking
requests from a fixed mix: search, generate (retrieve, or the methods given; then a GET of its deferred scores),
metadata + PEFT download of an adapter it generated, and upload of a fresh adapter. The server's resident memory
(RSS) is sampled every --sample-every seconds (psutil when installed, else /proc/PID/status). Writes
bench/results/soak.json: duration, requests and errors per route, RSS first/last/max and the least-squares slope in
MB per minute (after a warm-up minute, when the run is long enough, and over the second half), the machine and its
load average.

Usage::

    .venv/bin/python bench/soak.py                    # 10 minutes, 4 clients
    .venv/bin/python bench/soak.py --seconds 60       # a quick check
    .venv/bin/python bench/soak.py --home $LORAGEN_HOME/demo --methods retrieve,cvae
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    AUTH,
    SUBJECTS,
    AdapterMaker,
    Recorder,
    add_server_env,
    build_bank,
    copy_bank,
    free_port,
    load_average,
    machine,
    server_env,
    start_server,
    stop_server,
)

# Relative weights of the request kinds each client draws from.
MIX = {"search": 4, "generate": 3, "download": 2, "upload": 1}


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (psutil when installed, else /proc/PID/status)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status") from None


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time (MB/min); None with fewer than 3 samples."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    return 60 * sum((t - mt) * (r - mr) for t, r in samples) / var if var else None


def parse_mix(text: str) -> dict[str, int]:
    """"search=4,generate=3" -> {"search": 4, "generate": 3}; kinds not named get weight 0."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kind, _, weight = part.partition("=")
        if kind not in MIX or not weight.isdigit():
            raise SystemExit(f"--mix: {part!r} is not KIND=WEIGHT with KIND one of {sorted(MIX)} and WEIGHT an integer")
        mix[kind] = int(weight)
    if not any(mix.values()):
        raise SystemExit("--mix: give at least one kind a weight above 0")
    return mix


def client(url: str, client_id: int, deadline: float, methods: list[str], maker: AdapterMaker, rec: Recorder,
           counter: list[int], lock: threading.Lock, mix: dict[str, int] = MIX) -> None:
    rng = random.Random(client_id)
    mine: list[str] = []  # ids this client generated: what it downloads
    kinds, weights = list(mix), list(mix.values())
    with httpx.Client(base_url=url, headers=AUTH, timeout=300) as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            a, b = rng.sample(SUBJECTS, 2)
            text = f"soak client {client_id} #{i}: label 0 if the text is {a}, label 1 if it is {b}"
            kind = rng.choices(kinds, weights)[0]
            if kind == "download" and not mine:
                kind = "generate"
            if kind == "search":
                rec.call("GET /v1/search", lambda: http.get("/v1/search", params={"q": text, "k": 5}))
            elif kind == "generate":
                body = {"description": text, "method": methods[i % len(methods)], "seed": i}
                response = rec.call("POST /v1/adapters:generate", lambda: http.post("/v1/adapters:generate", json=body))
                if response is not None and response.status_code == 200:
                    mine = (mine + [response.json()["id"]])[-20:]
                    link = response.json().get("scores_url")
                    if link:  # the scores the service deferred (its default), as a client that wants them asks
                        rec.call("GET /v1/generations/{id}/scores", lambda: http.get(link))
            elif kind == "download":
                adapter_id = rng.choice(mine)
                rec.call("GET /v1/adapters/{id}", lambda: http.get(f"/v1/adapters/{adapter_id}"))
                rec.call("GET /v1/adapters/{id}/peft", lambda: http.get(f"/v1/adapters/{adapter_id}/peft"))
            else:
                with lock:
                    counter[0] += 1
                    seed = 100_000 + counter[0]
                archive = maker.zipped(seed)
                files = {"archive": ("adapter.zip", io.BytesIO(archive), "application/zip")}
                rec.call("POST /v1/adapters", lambda: http.post("/v1/adapters", files=files,
                                                                data={"description": f"soak upload {seed}: {text}"}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (default 600)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--methods", default="retrieve", help="generate methods, comma-separated, used in turn")
    parser.add_argument("--workers", type=int, default=2, help="server worker threads")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--home", type=Path, default=None, help="a `loragen demo` folder (its bank and hypernet/)")
    parser.add_argument("--bank", type=Path, default=None, help="bank to serve a copy of (default: --home's, else a "
                        "temporary 32-adapter bank)")
    parser.add_argument("--cvae-checkpoint", type=Path, default=None, help="default: --home's hypernet/")
    default_mix = ",".join(f"{k}={v}" for k, v in MIX.items())
    parser.add_argument("--mix", type=parse_mix, default=MIX, help="request kinds and their weights, e.g. "
                        f"search=1 for a search-only soak (default: {default_mix})")
    add_server_env(parser, "LORAGEN_MALLOC_TRIM_INTERVAL_S=0")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    env = server_env(args)
    source = args.bank or (args.home / "bank.duckdb" if args.home else None)
    checkpoint = args.cvae_checkpoint or (args.home / "hypernet" if args.home else None)

    rec = Recorder()
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="loragen-soak-") as tmp:
        bank = copy_bank(source, Path(tmp) / "bank") if source else Path(tmp) / "bank.duckdb"
        maker = AdapterMaker()
        if source is None:
            build_bank(bank)
        port = free_port()
        server = start_server(bank, port, ",".join(methods), args.workers, checkpoint, log=Path(tmp) / "server.log",
                              home=Path(tmp) / "home", extra_env=env)
        url = f"http://127.0.0.1:{port}"
        load_before = load_average()
        try:
            start = time.monotonic()
            deadline = start + args.seconds
            lock, counter = threading.Lock(), [0]
            threads = [threading.Thread(target=client, daemon=True,
                                        args=(url, c, deadline, methods, maker, rec, counter, lock, args.mix))
                       for c in range(args.clients)]
            for t in threads:
                t.start()
            print(f"soak: {args.clients} clients for {args.seconds:.0f} s against pid {server.pid} ...", flush=True)
            while any(t.is_alive() for t in threads):
                samples.append((time.monotonic() - start, rss_mb(server.pid)))
                time.sleep(min(args.sample_every, max(0.1, deadline - time.monotonic() + 0.1)))
            for t in threads:
                t.join()
            samples.append((time.monotonic() - start, rss_mb(server.pid)))
            duration = time.monotonic() - start
            alive = server.poll() is None
        finally:
            stop_server(server)
            log_tail = (Path(tmp) / "server.log").read_text()[-1500:]
    summary = rec.summary()
    rss = [r for _, r in samples]
    steady = [(t, r) for t, r in samples if t >= 60] if duration >= 180 else samples  # after a warm-up minute
    # Warm-up (models loaded by the first scored requests, caches filling) can outlast a minute on a slow machine:
    # the second half's slope says whether the level has settled.
    half = slope_mb_per_min([(t, r) for t, r in samples if t >= duration / 2])
    report = {
        "duration_s": round(duration, 1), "clients": args.clients, "methods": methods, "mix": args.mix,
        "server_workers": args.workers, "server_env": env, "server_alive_at_end": alive,
        "requests": summary["requests"], "errors": summary["errors"], "server_errors_5xx": summary["server_errors_5xx"],
        "error_samples": summary["error_samples"], "routes": summary["routes"],
        "rss_mb": {"first": round(rss[0], 1), "last": round(rss[-1], 1), "max": round(max(rss), 1),
                   "samples": len(rss), "every_s": args.sample_every},
        "rss_slope_mb_per_min": None if (s := slope_mb_per_min(steady)) is None else round(s, 3),
        "rss_slope_window": "after the first minute" if steady is not samples else "whole run",
        "rss_slope_second_half_mb_per_min": None if half is None else round(half, 3),
        "rss_series": [[round(t, 1), round(r, 1)] for t, r in samples],
        "bank": str(source) if source else "temporary (32)", "machine": machine(),
        "load_average_before": load_before, "load_average_after": load_average(),
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("duration_s", "requests", "errors", "server_errors_5xx", "rss_mb",
                                             "rss_slope_mb_per_min", "rss_slope_second_half_mb_per_min")}))
    if summary["errors"] or not alive:
        print(f"errors: {summary['error_samples']}\nserver log tail:\n{log_tail}")
    print(f"wrote {args.output}")
    return 0 if summary["errors"] == 0 and alive else 1


if __name__ == "__main__":
    sys.exit(main())
