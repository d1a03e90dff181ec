"""`loragen serve`: run the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EPILOG = """examples:
  loragen serve                                   # http://127.0.0.1:8000, docs at /docs
  LORAGEN_TOKEN=$(cat token) loragen serve --port 9000 --merge-root /srv/merged

Every setting can also come from the environment as LORAGEN_<NAME> (LORAGEN_TOKEN, LORAGEN_BANK_PATH,
LORAGEN_MAX_UPLOAD_BYTES, LORAGEN_REINDEX_INTERVAL_S, LORAGEN_REINDEX_CRON, LORAGEN_METHODS, ...).
The token is read from LORAGEN_TOKEN or --token-file, never from the command line (it would show in `ps`).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (generate, search, upload, merge, metrics)",
                       description="Serve loragen over HTTP: models and the bank load once at start; generation "
                       "runs in a worker pool; the bank is re-indexed on a schedule.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--bank", type=Path, default=None, help="bank DuckDB file (default $LORAGEN_HOME/bank.duckdb)")
    p.add_argument("--token-file", type=Path, default=None, help="file holding the API token required for writes")
    p.add_argument("--merge-root", type=Path, default=None, help="the only folder merged models are written under")
    p.add_argument("--methods", default=None, help="comma-separated generation methods (default: all available)")
    p.add_argument("--reindex-interval", type=float, default=None, help="seconds between re-indexes (0: off)")
    p.add_argument("--reindex-cron", default=None, help="crontab expression for re-indexing, e.g. '0 3 * * *'")
    p.add_argument("--workers", type=int, default=None, help="threads for generation and bank work (default 2)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from loragen.api.app import create_app
    from loragen.api.settings import Settings

    token = args.token_file.read_text().strip() if args.token_file else None
    methods = tuple(m.strip() for m in args.methods.split(",")) if args.methods else None
    settings = Settings.from_env(bank_path=args.bank, token=token, merge_root=args.merge_root, methods=methods,
                                 reindex_interval_s=args.reindex_interval, reindex_cron=args.reindex_cron,
                                 generation_workers=args.workers, device=args.device)
    if settings.token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host} without an API token: anyone who can reach it can write. "
              "Set LORAGEN_TOKEN or --token-file.")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    uvicorn.run(create_app(settings=settings), host=args.host, port=args.port, log_level="info")
    return 0
