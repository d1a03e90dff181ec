"""Request guards that run before routing: the API token, and body size limits.

Both are enforced in one ASGI middleware, before FastAPI reads or parses a body, so an unauthenticated or
oversized request is refused without the service spending work on it (and without anything being written):

- when a token is configured, every request but ``GET /healthz`` needs ``Authorization: Bearer <token>``:
  missing -> 401, wrong -> 403 (compared in constant time). That covers reads too (search, metadata, PEFT
  downloads, /metrics, /docs, /openapi.json): whoever reaches the port must not list or download the bank.
  With ``open_reads`` (LORAGEN_OPEN_READS=1, ``serve --open-reads``) reads (GET/HEAD/OPTIONS) are open and only
  writes need the token; without a token nothing is checked;
- a body larger than the limit is refused with 413: at once when Content-Length says so, otherwise as soon as
  the streamed bytes pass the limit. Uploads (`POST /v1/adapters`) get the larger upload limit.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loragen.api.errors import ApiError, error_response

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_PATH = "/v1/adapters"
OPEN_PATHS = frozenset({"/healthz"})  # liveness probes carry no token

# Declares the scheme in the OpenAPI schema; the check itself happens in `GuardMiddleware`.
bearer = HTTPBearer(auto_error=False, description="API token (set LORAGEN_TOKEN on the server)")


def check_token(expected: str | None, header: str | None) -> None:
    """Raise an `ApiError` unless `header` ("Bearer <token>") carries the expected token (or auth is off)."""
    if expected is None:
        return
    if not header:
        raise ApiError(401, "unauthorized", "this server requires an API token; send 'Authorization: Bearer "
                       "<token>' (Client(url=..., token=...) in the SDK).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(403, "forbidden", "the API token is wrong; check LORAGEN_TOKEN on the server.")


async def declare_bearer(request: Request) -> HTTPAuthorizationCredentials | None:
    """Route dependency that only documents the bearer scheme in OpenAPI (the middleware enforces it)."""
    return await bearer(request)


class GuardMiddleware:
    """ASGI middleware enforcing the token and the body size limits (see the module docstring).

    Args:
        app: the wrapped ASGI app.
        token: the API token, or None to accept every request without one.
        open_reads: with a token, let reads (GET/HEAD/OPTIONS) through without it; writes still need it.
        max_request_bytes: body limit for every request but uploads.
        max_upload_bytes: body limit for `POST /v1/adapters`.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_request_bytes: int, max_upload_bytes: int,
                 open_reads: bool = False) -> None:
        self.app = app
        self.token = token
        self.open_reads = open_reads
        self.max_request_bytes = max_request_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = self.max_upload_bytes if scope["path"] == UPLOAD_PATH else self.max_request_bytes
        try:
            if self._needs_token(scope["method"], scope["path"]):
                check_token(self.token, headers.get("authorization"))
            _check_declared_length(headers.get("content-length"), limit)
        except ApiError as err:
            await error_response(err)(scope, receive, send)
            return
        await self._call_limited(scope, receive, send, limit)

    def _needs_token(self, method: str, path: str) -> bool:
        if self.token is None or (path in OPEN_PATHS and method in READ_METHODS):
            return False
        return not (self.open_reads and method in READ_METHODS)

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except ApiError as err:  # raised by limited_receive where the app did not turn it into a response
            if started:
                raise
            await error_response(err)(scope, receive, send)


def _check_declared_length(value: str | None, limit: int) -> None:
    if value is None:
        return
    try:
        length = int(value)
    except ValueError:
        raise ApiError(400, "bad_request", f"Content-Length {value!r} is not a number.") from None
    if length > limit:
        raise _too_large(limit)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the request body is larger than this server accepts ({limit} bytes); "
                    "raise LORAGEN_MAX_REQUEST_BYTES / LORAGEN_MAX_UPLOAD_BYTES on the server if this is expected.")
