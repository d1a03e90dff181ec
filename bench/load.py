"""Load test: C concurrent clients x N generate requests against one `loragen serve` on loopback, per method, and a
mixed read/write run.

Starts the real server in a subprocess (`python -m loragen.api serve`, token set, W worker threads) on a private copy
of a bank (built in a temporary folder: random MiniLM adapters for a few dozen task descriptions; or a copy of
--bank / the bank of --home), then:

- for each method of --methods: C client threads, each with its own HTTP connection, each sending N
  `POST /v1/adapters:generate` requests with distinct descriptions (latency percentiles, errors, throughput);
- with --mixed: C threads alternating `GET /v1/search` and `POST /v1/adapters:generate` (the first method) while one
  more thread uploads fresh adapters (`POST /v1/adapters`) and re-indexes (`POST /v1/bank/reindex`) every few
  uploads: p50/p99 per route and the count of 5xx answers.

Everything is written as one JSON (bench/results/load.json by default) with the machine and its load average
before and after each run (timings on a loaded machine are not comparable; compare runs made side by side).

Usage::

    .venv/bin/python bench/load.py                          # 8 clients x 50 retrieve generates, temp bank
    loragen demo                                            # once: a trained CVAE checkpoint + bank
    .venv/bin/python bench/load.py --home $LORAGEN_HOME/demo --methods cvae,retrieve --mixed
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "load-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SUBJECTS = ["Polish", "Czech", "Spanish", "Portuguese", "German", "Dutch", "a person", "a city", "a date", "a number",
            "a positive review", "a negative review", "sport news", "politics news", "an email", "a phone number"]


def build_bank(path: Path, n_tasks: int = 32) -> None:
    """A bank of `n_tasks` random MiniLM adapters (kind final) with distinct descriptions, re-indexed."""
    from loragen.bank.store import Bank

    with Bank.open(path) as bank:
        for i, adapter in enumerate(AdapterMaker().many(n_tasks)):
            a, b = SUBJECTS[i % len(SUBJECTS)], SUBJECTS[(i * 7 + 3) % len(SUBJECTS)]
            bank.add(adapter, description=f"label 0 if the text is {a}, label 1 if it is {b} (variant {i})",
                     kind="final", source="bench")
        bank.reindex()


class AdapterMaker:
    """Random MiniLM LoRA adapters (query/value, r=4), distinct per seed; the base model loads once."""

    def __init__(self) -> None:
        from loragen.bank.base_model import load_base_model

        self.model = load_base_model()

    def one(self, seed: int):
        from loragen.bank.base_model import DEFAULT_BASE_MODEL
        from tests._models import random_adapter

        return random_adapter(self.model, ("query", "value"), r=4, alpha=8.0, seed=seed, scale=0.05,
                              base_model=DEFAULT_BASE_MODEL)

    def many(self, n: int, first_seed: int = 0) -> list:
        return [self.one(first_seed + i) for i in range(n)]

    def zipped(self, seed: int) -> bytes:
        from loragen.api.archive import pack
        from loragen.bank.lora import save_peft

        with tempfile.TemporaryDirectory(prefix="loragen-load-adapter-") as tmp:
            return pack(save_peft(self.one(seed), Path(tmp) / "adapter"))


def copy_bank(source: Path, directory: Path) -> Path:
    """A private copy of a bank (DuckDB file, its write-ahead log if any, its index folder, its retrieval trust file):
    the runs add adapters."""
    from loragen.api.trust import trust_path

    directory.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy2(f"{source}{suffix}", directory / f"{source.name}{suffix}")
    indexes = source.with_name(source.name + ".indexes")
    if indexes.is_dir():
        shutil.copytree(indexes, directory / indexes.name)
    trust = trust_path("retrieve", None, source)
    if trust is not None and trust.is_file():
        shutil.copy2(trust, trust_path("retrieve", None, directory / source.name))
    return directory / source.name


def add_server_env(parser: argparse.ArgumentParser, example: str) -> None:
    """The --server-env option (read back with `server_env`)."""
    parser.add_argument("--server-env", action="append", default=[], metavar="LORAGEN_NAME=VALUE",
                        help=f"a server setting, e.g. {example} (repeatable; kept in the JSON)")


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """--server-env "LORAGEN_X=1" ... -> {"LORAGEN_X": "1", ...}."""
    out = {}
    for text in args.server_env:
        name, sep, value = text.partition("=")
        if not sep or not name.startswith("LORAGEN_"):
            raise SystemExit(f"--server-env: {text!r} is not LORAGEN_NAME=VALUE")
        out[name] = value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(bank: Path, port: int, methods: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "loragen.api", "serve", "--port", str(port), "--bank", str(bank), "--methods",
            methods, "--reindex-interval", "0", "--workers", str(workers)]


def start_server(bank: Path, port: int, methods: str, workers: int, cvae_checkpoint: Path | None = None,
                 log: Path | None = None, home: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`loragen serve` in a subprocess with the token set (and `extra_env`: LORAGEN_* settings); returns once
    /healthz answers (every method ready)."""
    env = {**os.environ, "LORAGEN_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(extra_env or {})}
    env.pop("LORAGEN_OPEN_READS", None)
    if cvae_checkpoint is not None:
        env["LORAGEN_CVAE_CHECKPOINT"] = str(cvae_checkpoint)
    if home is not None:
        env["LORAGEN_HOME"] = str(home)
    out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (closed by the caller's exit)
    proc = subprocess.Popen(serve_command(bank, port, methods, workers), env=env, stdout=out,
                            stderr=subprocess.STDOUT if log is not None else subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text()[-2000:] if log is not None else proc.stderr.read()[-2000:]
            raise RuntimeError(f"server exited with {proc.returncode}: {detail}")
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if health.status_code == 200:
                missing = set(methods.split(",")) - set(health.json()["methods"])
                if missing:
                    proc.terminate()
                    raise RuntimeError(f"methods {sorted(missing)} are unavailable on the server: "
                                       f"{health.json()['unavailable']}")
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become healthy within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def describe(client_id: int, i: int, run: str) -> str:
    """A description no other request of any run sends (`run` names the run): the server's caches (description
    embeddings, probe outputs of a deterministic generator's adapter) never answer for a run what an earlier run
    paid for, so runs compare side by side."""
    a, b = SUBJECTS[(client_id + i) % len(SUBJECTS)], SUBJECTS[(3 * i + client_id + 1) % len(SUBJECTS)]
    return f"{run} client {client_id} request {i}: is the text {a} (label 0) or {b} (label 1)?"


class Recorder:
    """Thread-safe latencies and statuses per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[str, int]] = {}
        self.error_samples: list[str] = []

    def call(self, route: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = send()
            status, detail = str(response.status_code), response.text[:300]
        except httpx.HTTPError as err:
            response, status, detail = None, "transport_error", repr(err)
        seconds = time.perf_counter() - start
        with self._lock:
            self.latencies.setdefault(route, []).append(seconds)
            counts = self.statuses.setdefault(route, {})
            counts[status] = counts.get(status, 0) + 1
            if not status.startswith("2") and len(self.error_samples) < 5:
                self.error_samples.append(f"{route} {status}: {detail}")
        return response

    def summary(self) -> dict:
        routes = {route: {**percentiles(values), "statuses": self.statuses[route]}
                  for route, values in self.latencies.items()}
        errors = sum(n for counts in self.statuses.values() for s, n in counts.items() if not s.startswith("2"))
        server_errors = sum(n for counts in self.statuses.values() for s, n in counts.items() if s.startswith("5"))
        return {"routes": routes, "requests": sum(len(v) for v in self.latencies.values()), "errors": errors,
                "server_errors_5xx": server_errors, "error_samples": self.error_samples}


def percentiles(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    pct = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)  # noqa: E731
    return {"n": len(ordered), "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 1), "mean_ms": round(sum(ordered) / len(ordered) * 1000, 1)}


def run_threads(targets: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=t) for t in targets]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


SCORE_MODES = ("deferred", "inline", "off", "fetched")


def run_generate(url: str, clients: int, requests: int, method: str, score: str = "deferred", tag: str = "") -> dict:
    """`clients` threads x `requests` generates of `method`, distinct descriptions, with the request's `score`
    (deferred, inline, off); "fetched": deferred, and the client then GETs the generation's scores_url, as a raw
    HTTP client that wants the scores does (both routes are timed, and their sum per request as "generate+scores").
    `tag`: tells a warm-up's descriptions from the measured run's."""
    rec = Recorder()
    both: list[float] = []  # generate + scores GET per request ("fetched"); list.append is atomic

    def client(client_id: int) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=300) as http:
            for i in range(requests):
                body = {"description": describe(client_id, i, f"{method} {score} {tag}"), "method": method, "seed": i,
                        "score": "deferred" if score == "fetched" else score}
                start = time.perf_counter()
                r = rec.call("POST /v1/adapters:generate", lambda: http.post("/v1/adapters:generate", json=body))
                if score == "fetched" and r is not None and r.status_code == 200:
                    link = r.json()["scores_url"]
                    rec.call("GET /v1/generations/{id}/scores", lambda: http.get(link))
                    both.append(time.perf_counter() - start)

    wall = run_threads([lambda c=c: client(c) for c in range(clients)])
    summary = rec.summary()
    route = summary["routes"]["POST /v1/adapters:generate"]
    extra = {"generate+scores": percentiles(both)} if both else {}
    return {"kind": "generate", "method": method, "score": score, "clients": clients,
            "requests_per_client": requests,
            **{k: route[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}, **extra, **summary,
            "wall_s": round(wall, 2), "throughput_rps": round(route["n"] / wall, 2)}  # generations per second


def run_mixed(url: str, clients: int, requests: int, method: str, maker: AdapterMaker,
              reindex_every: int = 5) -> dict:
    """`clients` threads alternating search and generate (`requests` each) while one thread uploads fresh adapters
    and re-indexes every `reindex_every` uploads, until the readers are done."""
    rec = Recorder()
    done = threading.Event()
    uploads = [0]

    def reader(client_id: int) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=300) as http:
            for i in range(requests):
                text = describe(client_id, i, f"mixed {method}")
                if i % 2 == 0:
                    rec.call("GET /v1/search", lambda: http.get("/v1/search", params={"q": text, "k": 5}))
                else:
                    body = {"description": text, "method": method, "seed": i}
                    rec.call("POST /v1/adapters:generate", lambda: http.post("/v1/adapters:generate", json=body))

    def writer() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=300) as http:
            seed = 10_000
            while not done.is_set():
                archive = maker.zipped(seed)
                files = {"archive": ("adapter.zip", io.BytesIO(archive), "application/zip")}
                data = {"description": f"uploaded adapter {seed}: label 0 if the text is {SUBJECTS[seed % 16]}"}
                rec.call("POST /v1/adapters", lambda: http.post("/v1/adapters", files=files, data=data))
                seed += 1
                uploads[0] += 1
                if uploads[0] % reindex_every == 0:
                    rec.call("POST /v1/bank/reindex", lambda: http.post("/v1/bank/reindex"))

    def readers() -> None:
        run_threads([lambda c=c: reader(c) for c in range(clients)])
        done.set()

    wall = run_threads([readers, writer])
    summary = rec.summary()
    return {"kind": "mixed", "method": method, "clients": clients, "requests_per_client": requests,
            "writer": f"1 thread: upload, re-index every {reindex_every} uploads", "uploads": uploads[0], **summary,
            "wall_s": round(wall, 2)}


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--methods", "--method", dest="methods", default="retrieve",
                        help="generation methods to load, comma-separated, each its own run (retrieve, cvae, abmll)")
    parser.add_argument("--score", default="deferred",
                        help="the generates' `score`, comma-separated, a run each: deferred (the service's default: "
                        "the scores are left for a GET), inline (computed before answering), off, fetched (deferred, "
                        "then the client GETs the scores: what a raw client that wants them waits for)")
    parser.add_argument("--mixed", action="store_true", help="also the mixed read/write run (with the first method)")
    parser.add_argument("--workers", type=int, default=2, help="server worker threads")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured generates per client and method first, all "
                        "clients at once, in the first --score mode (first-use costs: models, probe texts, the "
                        "server's heap and the bank file growing to their working size: after a 3-request warm-up "
                        "the first measured CVAE run had a p99 of 490 ms against 190 ms for the next, "
                        "bench/results/load_warmup_effect.json; after 80 requests still 290 ms)")
    parser.add_argument("--home", type=Path, default=None,
                        help="a `loragen demo` folder: its bank.duckdb and its CVAE checkpoint (hypernet/) are used")
    parser.add_argument("--bank", type=Path, default=None, help="bank to serve a copy of (default: --home's, else a "
                        "temporary 32-adapter bank)")
    parser.add_argument("--cvae-checkpoint", type=Path, default=None, help="default: --home's hypernet/")
    add_server_env(parser, "LORAGEN_MALLOC_MMAP_THRESHOLD=0")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()
    env = server_env(args)
    scores = [m.strip() for m in args.score.split(",") if m.strip()]
    if not scores or set(scores) - set(SCORE_MODES):
        parser.error(f"--score takes {', '.join(SCORE_MODES)} (comma-separated), got {args.score!r}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    source = args.bank or (args.home / "bank.duckdb" if args.home else None)
    checkpoint = args.cvae_checkpoint or (args.home / "hypernet" if args.home else None)

    runs = []
    with tempfile.TemporaryDirectory(prefix="loragen-load-") as tmp:
        bank = copy_bank(source, Path(tmp) / "bank") if source else Path(tmp) / "bank.duckdb"
        maker = AdapterMaker() if args.mixed else None
        if source is None:
            print("building a 32-adapter bank ...", flush=True)
            build_bank(bank)
        port = free_port()
        server = start_server(bank, port, ",".join(methods), args.workers, checkpoint, log=Path(tmp) / "server.log",
                              home=Path(tmp) / "home", extra_env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            for method in methods:
                if args.warmup:  # first-use costs (models, caches, heap growth) are not measured
                    run_generate(url, args.clients, args.warmup, method, scores[0], tag="warm-up")
                for k, score in enumerate(scores):
                    before = load_average()
                    print(f"{args.clients} clients x {args.requests} '{method}' generates (score={score}) ...",
                          flush=True)
                    result = run_generate(url, args.clients, args.requests, method, score, tag=f"run {k}")
                    runs.append({**result, "load_average_before": before, "load_average_after": load_average()})
                    print(json.dumps({k: result[k] for k in ("method", "score", "errors", "p50_ms", "p99_ms",
                                                             "throughput_rps")}), flush=True)
            if args.mixed:
                before = load_average()
                print(f"mixed: {args.clients} threads search+generate ({methods[0]}) while one uploads and "
                      "re-indexes ...", flush=True)
                result = run_mixed(url, args.clients, args.requests, methods[0], maker)
                runs.append({**result, "load_average_before": before, "load_average_after": load_average()})
                print(json.dumps({"mixed": {r: {k: v[k] for k in ("n", "p50_ms", "p99_ms")}
                                            for r, v in result["routes"].items()},
                                  "5xx": result["server_errors_5xx"], "errors": result["errors"]}), flush=True)
        finally:
            stop_server(server)
    report = {"runs": runs, "server_workers": args.workers, "server_env": env,
              "warmup_per_client_and_method": args.warmup, "bank": str(source) if source else "temporary (32)",
              "cvae_checkpoint": str(checkpoint) if checkpoint else None, "machine": machine(),
              "command": " ".join(["bench/load.py", *sys.argv[1:]]),
              "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
