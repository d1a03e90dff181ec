"""Helpers shared by the routers: the service from app state, and running blocking work off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, Request

from loragen.api.schemas import ErrorBody
from loragen.api.security import declare_bearer
from loragen.api.service import Service

T = TypeVar("T")

# Every route documents the one error body; writes also document the bearer token.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
}
WRITE = [Depends(declare_bearer)]
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


def service(request: Request) -> Service:
    """The service started in the app's lifespan."""
    return request.app.state.service


async def offload(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking `fn` (generation, bank I/O, torch) in the app's worker pool so the event loop stays free."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app.state.executor, functools.partial(fn, *args, **kwargs))
