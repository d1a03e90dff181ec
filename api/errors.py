"""One exception type for the HTTP layer, one handler, one JSON error body.

Domain errors (`bank.errors.LoragenError` and its subclasses) are mapped to HTTP status codes here and nowhere
else, so a route never decides a status code by itself. Every error body has the same shape::

    {"error": {"status": 404, "code": "not_found", "message": "adapter 'x' is not in the bank ..."}}

Unexpected exceptions become a 500 whose body does NOT carry the exception text (it is logged instead), so
internals never leak to a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def to_api_error(err: BaseException) -> ApiError | None:
    """Map a domain exception to an `ApiError`, or None for an unexpected one (a server bug)."""
    if isinstance(err, ApiError):
        return err
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
    elif isinstance(err, StarletteHTTPException):
        api = ApiError(err.status_code, "http_error", str(err.detail))
    else:
        api = to_api_error(err)
    if api is None:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=err)
        api = ApiError(500, "internal", "internal server error; the server log has the details.")
    elif api.status >= 500:
        log.error("%s %s -> %d %s", request.method, request.url.path, api.status, api.message)
    return JSONResponse(api.body(), status_code=api.status, headers=_headers(api))


def _headers(api: ApiError) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if api.status == 401 else None


def error_response(api: ApiError) -> JSONResponse:
    """The JSON response for `api` (used by middleware that answers before routing)."""
    return JSONResponse(api.body(), status_code=api.status, headers=_headers(api))


def install_error_handlers(app: FastAPI) -> None:
    """Register the one handler for every exception the app can raise."""
    for cls in (ApiError, LoragenError, ValueError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, _handle)
