"""The FastAPI app factory. Heavy resources start once in `lifespan` and are shared by every request.

Run it with `loragen serve` (uvicorn), or build it yourself::

    from loragen.api.app import create_app
    from loragen.api.settings import Settings
    app = create_app(settings=Settings.from_env())
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from loragen.api import __version__
from loragen.api.allocator import Trimmer, fix_mmap_threshold, limit_arenas
from loragen.api.errors import install_error_handlers
from loragen.api.metrics import Metrics, MetricsMiddleware
from loragen.api.routes import ROUTERS
from loragen.api.routes._deps import valid_unicode
from loragen.api.scratch import sweep_stale
from loragen.api.security import GuardMiddleware
from loragen.api.service import Service
from loragen.api.settings import Settings

log = logging.getLogger(__name__)


def create_app(*, settings: Settings, service: Service | None = None) -> FastAPI:
    """Build the loragen HTTP app.

    Args:
        settings: the service settings (token, limits, bank path, merge root, schedule, methods).
        service: an already started service to serve (the caller keeps ownership and closes it); by default the
            app starts its own in `lifespan` and closes it on shutdown.

    Returns:
        The FastAPI app; the OpenAPI schema is at /openapi.json and the docs at /docs.
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        # Scratch folders of a server that was killed mid-request (SIGKILL cannot clean up).
        await asyncio.to_thread(sweep_stale)
        if settings.torch_threads is not None:
            import torch

            torch.set_num_threads(settings.torch_threads)  # process-wide: requests run in parallel on workers
        # Before the workers and the models allocate (api/allocator.py: glibc only).
        if limit_arenas(settings.malloc_arena_max):
            log.info("malloc arenas limited to %d", settings.malloc_arena_max)
        if fix_mmap_threshold(settings.malloc_mmap_threshold):
            log.info("malloc mmap threshold fixed at %d bytes", settings.malloc_mmap_threshold)
        # Starting the service loads models and opens the bank: slow and blocking, so not on the event loop.
        svc = await asyncio.to_thread(Service.start, settings) if owned else service
        if owned:
            await asyncio.to_thread(svc.warm_up)
        _attach_metrics(svc, metrics)
        app.state.service = svc
        app.state.executor = ThreadPoolExecutor(settings.generation_workers, thread_name_prefix="loragen")
        if owned:
            svc.start_schedule()
        trimmer = Trimmer(settings.malloc_trim_interval_s).start() if settings.malloc_trim_interval_s > 0 else None
        log.info("loragen %s serving; methods ready: %s; unavailable: %s", __version__, sorted(svc.generators),
                 svc.unavailable)
        try:
            yield
        finally:
            if trimmer is not None:
                trimmer.stop()
            app.state.executor.shutdown(wait=True)
            if owned:
                await asyncio.to_thread(svc.close)

    app = FastAPI(title="loragen", version=__version__, lifespan=lifespan,
                  description="Turn a plain-language task description into a LoRA adapter (PEFT format) with an "
                  "honest trust score: a generation answers at once, its uncertainty and trust scores come from its "
                  "`scores_url` (or in the response with `score=inline`). When the server has a token, every "
                  "request but `GET /healthz` needs `Authorization: Bearer <token>` (reads are open only if the "
                  "server sets open_reads).",
                  dependencies=[Depends(valid_unicode)])
    app.state.metrics = metrics
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    # Added last = outermost: metrics see every request, including those the guard refuses.
    app.add_middleware(GuardMiddleware, token=settings.token, open_reads=settings.open_reads,
                       max_request_bytes=settings.max_request_bytes,
                       max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _attach_metrics(svc: Service, metrics: Metrics) -> None:
    def on_generate(method: str, seconds: float, n: int) -> None:
        metrics.generations.labels(method).inc(n)
        metrics.generation_seconds.labels(method).observe(seconds)

    svc.on_generate = on_generate
    svc.on_reindex = lambda trigger: metrics.reindexes.labels(trigger).inc()
