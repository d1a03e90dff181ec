"""`loragen serve`: run the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

from loragen.api.commands._options import (
    add_bank,
    add_device,
    comma_list,
    non_negative_float,
    positive_int,
)
from loragen.api.generators import METHODS

log = logging.getLogger(__name__)

EPILOG = """examples:
  loragen serve                                   # http://127.0.0.1:8000, docs at /docs
  LORAGEN_TOKEN=$(cat token) loragen serve --port 9000 --merge-root /srv/merged

Every setting can also come from the environment as LORAGEN_<NAME> (LORAGEN_TOKEN, LORAGEN_BANK_PATH,
LORAGEN_MAX_UPLOAD_BYTES, LORAGEN_REINDEX_INTERVAL_S, LORAGEN_REINDEX_CRON, LORAGEN_METHODS, LORAGEN_BASE_MODELS, ...);
flags win over the environment. The token is read from LORAGEN_TOKEN or --token-file, never from the command line
(it would show in `ps`); without one, nothing needs auth (unset LORAGEN_TOKEN; an empty one is refused).

auth: with a token, EVERY request but GET /healthz needs `Authorization: Bearer <token>`: writes, and reads too
(search, adapter metadata, /peft downloads, /metrics, /docs, /openapi.json); missing -> 401, wrong -> 403.
--open-reads (LORAGEN_OPEN_READS=1) serves the reads to anyone and keeps the token on writes only.

The bank and each generator's checkpoint: LORAGEN_BANK_PATH / --bank, LORAGEN_CVAE_CHECKPOINT,
LORAGEN_ABMLL_CHECKPOINT, else yours under $LORAGEN_HOME, else the demo's (`loragen demo`).

generation methods: {methods}
accepted base models: those listed (--base-models, LORAGEN_BASE_MODELS; default: minilm) plus, unless
--no-auto-base-models (LORAGEN_AUTO_BASE_MODELS=0), the base models of the loaded generators' checkpoints and of
the bank's adapters. A base model is one of
{base_models}
  or a local transformers directory (with config.json; an encoder or a causal LM); never downloaded
"""


def _epilog() -> str:
    from loragen.bank.base_model import PACKAGED

    rows = "\n".join(f"  {m.aliases[-1]:<10} {m.id} ({m.kind}; {m.install})" for m in PACKAGED)
    return EPILOG.format(methods=", ".join(METHODS), base_models=rows)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (generate, search, upload, merge, metrics)",
                       description="Serve loragen over HTTP: models and the bank load once at start; generation "
                       "runs in a worker pool; the bank is re-indexed on a schedule.", epilog=_epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    add_bank(p)
    p.add_argument("--token-file", type=Path, default=None,
                   help="file holding the API token; with one, every request but GET /healthz needs it")
    p.add_argument("--open-reads", dest="open_reads", action="store_const", const=True, default=None,
                   help="with a token, serve reads (search, metadata, downloads, /metrics, /docs) without it; "
                   "writes still need it")
    p.add_argument("--merge-root", type=Path, default=None, help="the only folder merged models are written under")
    p.add_argument("--methods", type=comma_list(METHODS), default=None, metavar="M[,M...]",
                   help=f"generation methods to offer, comma-separated (default: all of {', '.join(METHODS)} that "
                   "can start)")
    p.add_argument("--base-models", type=lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) or None,
                   default=None, metavar="NAME[,NAME...]",
                   help="base models the service accepts adapters for, comma-separated: packaged names or local "
                   "transformers directories (listed below; default: minilm), besides those of its generators and "
                   "bank")
    p.add_argument("--no-auto-base-models", dest="auto_base_models", action="store_const", const=False,
                   default=None, help="accept only the --base-models, not also those of the generators' "
                   "checkpoints and of the bank's adapters")
    p.add_argument("--reindex-interval", type=non_negative_float, default=None, metavar="SECONDS",
                   help="seconds between re-indexes (0: off; default 3600)")
    p.add_argument("--reindex-cron", default=None, metavar="EXPR",
                   help="crontab expression for re-indexing instead, e.g. '0 3 * * *'")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="threads for generation and bank work (default 2)")
    add_device(p, default=None)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    """The service settings: the flags over the LORAGEN_* environment over the defaults.

    Raises:
        ConfigError: a bad setting (each named with its variable), or an unreadable --token-file.
    """
    from loragen.api.settings import Settings
    from loragen.bank.errors import ConfigError

    token = None
    if args.token_file is not None:
        if not args.token_file.is_file():
            raise ConfigError(f"--token-file {args.token_file}: no such file; write the token into it, or drop the "
                              "flag to use LORAGEN_TOKEN")
        token = args.token_file.read_text().strip()
    return Settings.from_env(bank_path=args.bank, token=token, open_reads=args.open_reads, merge_root=args.merge_root,
                             methods=args.methods,
                             base_models=args.base_models, auto_base_models=args.auto_base_models,
                             reindex_interval_s=args.reindex_interval,
                             reindex_cron=args.reindex_cron, generation_workers=args.workers, device=args.device)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # every setting is checked before anything loads

    import uvicorn

    from loragen.api.app import create_app
    from loragen.api.service import Service

    if settings.token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without an API token: anyone who can reach it can read and write. Set "
                    "LORAGEN_TOKEN or --token-file.", args.host)
    elif settings.token is None and settings.open_reads:
        log.warning("--open-reads / LORAGEN_OPEN_READS has no effect without a token: nothing needs auth.")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    # Started here rather than in the app's lifespan, so that a bank or model that cannot load is a one-line error
    # before the port opens, not a traceback from inside uvicorn.
    with Service.start(settings) as service:
        service.warm_up()
        service.start_schedule()
        _close_on_sigterm(service)
        uvicorn.run(create_app(settings=settings, service=service), host=args.host, port=args.port,
                    log_level="debug" if args.verbose >= 2 else "info")
    return 0


def _close_on_sigterm(service) -> None:
    """After a graceful shutdown on SIGTERM uvicorn re-raises the signal; close the service (schedule, bank) first,
    then end the process by that signal as before. (Ctrl-C re-raises as KeyboardInterrupt and closes it anyway.)"""
    if threading.current_thread() is not threading.main_thread():
        return

    def close_then_die(sig: int, frame) -> None:
        service.close()
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)

    signal.signal(signal.SIGTERM, close_then_die)
