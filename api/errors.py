"""One exception type for the HTTP layer, one handler, one JSON error body.

Domain errors (`bank.errors.LoragenError` and its subclasses) are mapped to HTTP status codes here and nowhere
else, so a route never decides a status code by itself. Every error body has the same shape::

    {"error": {"status": 404, "code": "not_found", "message": "adapter 'x' is not in the bank ..."}}

Unexpected exceptions become a 500 whose body does NOT carry the exception text (it is logged instead), so
internals never leak to a client. That 500 is an ordinary response (`CatchAllMiddleware`): the keep-alive
connection stays usable. A full disk (ENOSPC/EDQUOT, from the OS or from DuckDB) is a 507 whatever raised it.
Server paths (the bank, temp and home folders) are cut out of every error message (the log keeps them).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loragen.api.archive import ArchiveError
from loragen.bank.errors import (
    AdapterFormatError,
    AdapterShapeError,
    BankError,
    ChecksumError,
    ConfigError,
    DuplicateAdapterError,
    LoragenError,
    NonFiniteError,
    NotFoundError,
    UnknownBaseModelError,
)
from loragen.bank.paths import bank_path, home

log = logging.getLogger(__name__)


class ApiError(StarletteHTTPException):
    """An error the service answers with a status code, a machine-readable code and a message for people.

    It derives from Starlette's HTTPException so that FastAPI passes it through unchanged even when it is raised
    while a body is being read (the size guard does that).

    Args:
        status: the HTTP status code.
        code: a short snake_case code clients can branch on ("unauthorized", "too_large", ...).
        message: what was wrong and what to do about it.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict:
        """The JSON error body."""
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


# Most specific first: the first matching class wins.
_DOMAIN_STATUS: tuple[tuple[type[BaseException], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (DuplicateAdapterError, 409, "duplicate"),
    (ChecksumError, 500, "corrupt_bank"),
    (ArchiveError, 400, "bad_archive"),
    (UnknownBaseModelError, 422, "unknown_base_model"),
    (AdapterShapeError, 422, "bad_adapter_shape"),
    (AdapterFormatError, 422, "bad_adapter_format"),
    (NonFiniteError, 422, "non_finite"),
    (ConfigError, 422, "invalid_request"),  # request/config dataclasses check themselves, naming the field
    (BankError, 503, "bank_unavailable"),
    (LoragenError, 400, "bad_request"),
    (ValueError, 422, "invalid_request"),  # config/request dataclasses raise ValueError naming the field
)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXTS = tuple(os.strerror(e) for e in _FULL_ERRNOS)  # DuckDB reports the OS error as text only


def storage_full(err: BaseException | None) -> bool:
    """Whether `err`, or an exception that caused it, says the disk (or quota) is full."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if isinstance(err, duckdb.Error) and any(text in str(err) for text in _FULL_TEXTS):
            return True
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return False


def insufficient_storage() -> ApiError:
    """The 507 for a write that found the disk full (every write is atomic, so nothing was stored)."""
    return ApiError(507, "insufficient_storage", "the server ran out of disk space while handling this request; "
                    "nothing was stored. Try again later; the operator must free space on the server.")


def to_api_error(err: BaseException) -> ApiError | None:
    """Map a domain exception to an `ApiError`, or None for an unexpected one (a server bug)."""
    if isinstance(err, ApiError):
        return err
    if storage_full(err):
        return insufficient_storage()
    for cls, status, code in _DOMAIN_STATUS:
        if isinstance(err, cls):
            return ApiError(status, code, str(err))
    return None


def _validation_message(err: RequestValidationError) -> ApiError:
    problems = err.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        detail = next(p for p in problems if p.get("type") == "json_invalid")
        where = detail.get("ctx", {}).get("error", "")
        return ApiError(400, "malformed_json", f"the request body is not valid JSON ({where}); send a JSON object.")
    parts = []
    for p in problems[:10]:
        loc = ".".join(str(x) for x in p.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {p.get('msg', 'invalid')}")
    return ApiError(422, "invalid_request", "invalid request: " + "; ".join(parts))


async def _handle(request: Request, err: Exception) -> JSONResponse:
    if isinstance(err, ApiError):
        api = err
    elif isinstance(err, RequestValidationError):
        api = _validation_message(err)
    elif storage_full(err):  # also when FastAPI wrapped it (a spooled upload that hit a full disk is a 400 there)
        api = insufficient_storage()
    elif isinstance(err, StarletteHTTPException):
        api = ApiError(err.status_code, "http_error", str(err.detail))
    else:
        api = to_api_error(err)
    if api is None:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
        api = ApiError(500, "internal", "internal server error; the server log has the details.")
    elif api.code == "insufficient_storage":
        log.error("%s %s -> 507: %s", request.method, request.url.path, err)
    elif api.status >= 500:
        log.error("%s %s -> %d %s", request.method, request.url.path, api.status, api.message)
    message = redact(api.message, getattr(request.app.state, "settings", None))
    if message != api.message:
        log.info("%s %s -> %d %s", request.method, request.url.path, api.status, api.message)
        api = ApiError(api.status, api.code, message)
    return error_response(api)


def _headers(api: ApiError) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if api.status == 401 else None


def error_response(api: ApiError) -> JSONResponse:
    """The JSON response for `api` (used by middleware that answers before routing)."""
    body = api.body()
    # A message may quote client input; a lone surrogate in it could not be encoded as UTF-8.
    body["error"]["message"] = api.message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(body, status_code=api.status, headers=_headers(api))


# ---- server paths stay out of responses --------------------------------------------------------------------

# An absolute path of two or more parts that is not an API route or part of a URL or of a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/<>-])/(?!v1/)(?:[\w.@+~-]+/)+[\w.@+~-]*")
_PATH_END = r"(?=$|[/\s'\"`,;:)\]}])"


def server_paths(settings: Any) -> list[tuple[str, str]]:
    """(path, placeholder) for the server's own locations, longest first (absolute and resolved forms)."""
    bank = getattr(settings, "bank_path", None) or bank_path()
    named: list[tuple[Any, str]] = [
        (bank, "<bank>"), (Path(bank).parent, "<bank dir>"), (getattr(settings, "merge_root", None), "<merge root>"),
        (getattr(settings, "cvae_checkpoint", None), "<checkpoint>"),
        (getattr(settings, "abmll_checkpoint", None), "<checkpoint>"),
        (getattr(settings, "calibrator", None), "<calibrator>"), (home(), "<loragen home>"),
        (tempfile.gettempdir(), "<tmp>"), (Path.home(), "~"),
    ]
    pairs: dict[str, str] = {}
    for path, label in named:
        if path is None:
            continue
        for form in {str(Path(path).expanduser().absolute()), str(Path(path).expanduser().resolve())}:
            if len(Path(form).parts) > 1:  # never the filesystem root
                pairs.setdefault(form, label)
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def redact(message: str, settings: Any = None) -> str:
    """`message` with the server's paths replaced by placeholders and any other absolute path by ``<path>``,
    so unauthenticated clients learn nothing of the server's filesystem. The log keeps the original."""
    for path, label in server_paths(settings):
        if path in message:
            message = re.sub(re.escape(path) + _PATH_END, label, message)
    return _ABSOLUTE_PATH.sub("<path>", message)


class CatchAllMiddleware:
    """Answers an unexpected exception with the JSON 500 as an ordinary response.

    Starlette's outermost ServerErrorMiddleware also answers with the handler's response but then re-raises, and
    uvicorn closes the keep-alive connection, so a client's next request on it fails. This middleware sits inside
    it and does not re-raise (the exception is logged by `_handle`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as err:
            if started:  # half a response is out: nothing sensible can follow, the server closes the connection
                raise
            response = await _handle(Request(scope), err)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the one handler for every exception the app can raise, and the catch-all for the rest."""
    for cls in (ApiError, LoragenError, ValueError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, _handle)
    app.add_middleware(CatchAllMiddleware)
