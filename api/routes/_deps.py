"""Helpers shared by the routers: the service from app state, and running blocking work off the event loop."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, Request

from loragen.api.errors import ApiError
from loragen.api.schemas import ErrorBody
from loragen.api.security import declare_bearer
from loragen.api.service import Service

T = TypeVar("T")

# Every route documents the one error body; all but /healthz also document the bearer token (reads need it too
# unless the server opens them; the guard middleware enforces it).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 404, 409, 413, 422, 503)
}
WRITE = READ = [Depends(declare_bearer)]
READ_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    507: {"model": ErrorBody, "description": "the server's disk is full; nothing was stored"},
}


def service(request: Request) -> Service:
    """The service started in the app's lifespan."""
    return request.app.state.service


async def offload(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking `fn` (generation, bank I/O, torch) in the app's worker pool so the event loop stays free."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app.state.executor, functools.partial(fn, *args, **kwargs))


async def valid_unicode(request: Request) -> None:
    """App-wide dependency: refuse a JSON body holding a string that is not valid Unicode.

    JSON can spell a lone surrogate ("\\ud800"); Python decodes it into a str that no tokenizer, database or UTF-8
    response accepts. Query, path and form values cannot carry one (they are decoded from bytes), so JSON bodies
    are the only place to look. FastAPI has parsed (and cached) the body before dependencies run.

    Raises:
        ApiError: 422 naming the field.
    """
    content_type = request.headers.get("content-type", "").lower()
    if "json" not in content_type:
        return
    try:
        body = await request.json()
    except Exception:  # FastAPI has already answered a malformed body before dependencies run
        return
    where = _lone_surrogate(body)
    if where is not None:
        raise ApiError(422, "invalid_request", f"invalid request: {where or 'body'}: the string holds a lone "
                       "surrogate (e.g. \"\\ud800\"), which is not valid Unicode; send UTF-8 text.")


def _lone_surrogate(body: Any) -> str | None:
    """The dotted location of the first string in `body` that cannot be encoded as UTF-8, or None."""
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}".lstrip(".")) for k, v in value.items())
            stack.extend((k, where) for k in value if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend((v, f"{where}.{i}".lstrip(".")) for i, v in enumerate(value))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return where
    return None
