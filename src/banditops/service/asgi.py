"""The ASGI wrapper in front of the application: limits before bodies, metrics for everything.

Before any byte of a body is read: an unknown route or method is answered (404/405), the API
key is checked from the headers (401/403), and a declared ``Content-Length`` over the limit is
a 413. The body is then read with a size limit (413 while streaming) and a time limit
(408), and replayed to the application. Early answers close the connection, so an unread
body is never drained. Keys are compared as SHA-256 digests; a key that is not printable
ASCII is a 401.

A plain ASGI callable rather than a Starlette middleware: microseconds, not a task per
request. Every request, whatever its answer, is counted and timed once.

Streamed routes (the artifact upload) are the exception to reading the body here: after the
same route match and key check, the Content-Type must be multipart/form-data and a declared
``Content-Length`` at most ``max_upload_bytes`` (else 415/413, before any byte is read); the
endpoint then reads the body itself, streaming it to a file with its own limits (see
``uploads.py``). Any error answer to a streamed route closes the connection, since its body
may be unread.

The predict route is answered here directly (``fast``): after the same route match, key
check and body limits as every route, its endpoint is called without FastAPI's request,
dependency and response layers, which cost as much as the routing decision and the
database write together (measured in ``benchmarks/server.py``). It is the only predict
path; the FastAPI route with the same endpoint documents it in the OpenAPI description.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from starlette.routing import Match

from banditops.service.endpoints import Caller, HttpError, encode, error_answer
from banditops.service.logs import log_access
from banditops.service.metrics import Metrics

log = logging.getLogger("banditops.service")
KEY_PATTERN = re.compile(rb"[\x21-\x7e]{1,512}")  # printable ASCII, no spaces
KEY_HEADERS = (b"authorization", b"x-api-key")
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; httptools alone would take any size
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
             b"content-length: 42\r\nconnection: close\r\n\r\n"
             b"request headers over the 65,536-byte limit")
CALLER = "banditops.caller"  # the scope key endpoints read the caller from


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    body_timeout_seconds: float
    max_upload_bytes: int = 100_000_000  # streamed routes (the upload) only


def key_digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class Guard:
    """Wraps the application; ``access`` maps (method, route template) to the scope needed
    ("client", "admin", or None for public routes; routes missing from it need admin)."""

    def __init__(self, app: Any, *, keys: dict[str, str],
                 access: dict[tuple[str, str], str | None], metrics: Metrics,
                 limits: Limits, fast: dict[tuple[str, str], Any] | None = None,
                 streamed: set[tuple[str, str]] | None = None) -> None:
        self.app = app
        self.state = app.state  # tests and tools reach the application state through here
        self.routes = app.router.routes
        self.digests = [(key_digest(key), scope) for key, scope in keys.items()]
        self.access = access
        self.metrics = metrics
        self.limits = limits
        self.fast = fast or {}
        self.streamed = streamed or set()  # (method, route): the endpoint reads the body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [0]

        async def recorded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        # HEAD is answered as GET; uvicorn drops the body of an answer to HEAD itself
        inner = {**scope, "method": "GET"} if scope["method"] == "HEAD" else scope
        route, allowed, params = self._match(inner)
        body = payload = None
        streamed = (inner["method"], route) in self.streamed
        try:
            body = await self._admit(inner, receive, route, allowed, streamed=streamed)
            fast = self.fast.get((inner["method"], route))
            if streamed:
                await self.app(inner, receive, _closing_on_error(recorded))
            elif body is not None and fast is not None:
                payload = await fast(**params, raw=body, caller=inner[CALLER])
                await _answer(recorded, 200, payload, [], close=False)
            elif body is not None:
                await self.app(inner, _replay(body, receive), recorded)
        except HttpError as error:  # an unread body: end the connection rather than drain it
            await _answer(recorded, *error_answer(error), close=body is None or streamed)
        except Exception as error:  # the application's own handlers answered, or not
            if not status[0]:
                await _answer(recorded, *error_answer(error), close=body is None or streamed)
            elif status[0] < 500:
                log.exception("error after the answer started on %s", route)
        if status[0]:
            seconds = time.perf_counter() - started
            self.metrics.request(scope["method"], route, status[0], seconds)
            log_access(scope["method"], route, scope["path"][:200], status[0], seconds,
                       params, payload)

    def _match(self, scope: dict[str, Any]) -> tuple[str | None, list[str], dict[str, Any]]:
        """(route template, [], path parameters) or (None, the methods the path allows, {})."""
        allowed: list[str] = []
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route.path, [], child.get("path_params", {})
            if match is Match.PARTIAL:
                allowed.extend(sorted(getattr(route, "methods", None) or ()))
        return None, allowed, {}

    async def _admit(self, scope: dict[str, Any], receive: Any, route: str | None,
                     allowed: list[str], *, streamed: bool = False) -> bytes | None:
        """The body once the request may be read (b"" for a streamed route, whose endpoint
        reads it); raises HttpError for early answers."""
        if route is None:
            if allowed:
                raise HttpError(405, f"method {scope['method'][:10]} not allowed here; use "
                                     f"{', '.join(allowed)}")
            raise HttpError(404, "no such route; see /docs")
        headers = dict(scope["headers"])
        need = self.access.get((scope["method"], route), "admin")
        if need is not None:
            if sum(name in KEY_HEADERS for name, _ in scope["headers"]) > 1:
                raise HttpError(401, "more than one API key header: send one 'Authorization: "
                                     "Bearer <key>' (or one X-API-Key)")
            caller = self._caller(headers)
            if need == "admin" and caller.scope != "admin":
                raise HttpError(403, "this API key has the client scope; this needs admin")
            scope[CALLER] = caller
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if streamed:
            if kind != b"multipart/form-data":
                raise HttpError(415, f"Content-Type {kind[:60].decode('latin-1')!r}: send "
                                     "multipart/form-data")
            self._declared(headers, self.limits.max_upload_bytes,
                           "upload over the {limit:,}-byte limit (max_upload_bytes)")
            return b""
        if kind and kind != b"application/json" and not kind.endswith(b"+json"):
            raise HttpError(415, f"Content-Type {kind[:60].decode('latin-1')!r}: send "
                                 "application/json")
        return await self._body(headers, receive)

    def _caller(self, headers: dict[bytes, bytes]) -> Caller:
        header = headers.get(b"authorization", b"")
        key = header[7:] if header[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        if not key:
            raise HttpError(401, "missing API key: send 'Authorization: Bearer <key>'")
        if not KEY_PATTERN.fullmatch(key):
            raise HttpError(401, "malformed API key: keys are printable ASCII without spaces")
        digest = key_digest(key)
        found = None
        for known, scope in self.digests:  # every digest compared: no early exit timing
            if hmac.compare_digest(digest, known):
                found = scope
        if found is None:
            raise HttpError(401, "unknown API key")
        return Caller(found, digest.hex()[:16])

    @staticmethod
    def _declared(headers: dict[bytes, bytes], limit: int,
                  message: str = "request body over the {limit:,}-byte limit") -> None:
        """413 for a declared Content-Length over ``limit`` (400 for a malformed one)."""
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                raise HttpError(400, "invalid Content-Length header")
            if int(length) > limit:
                raise HttpError(413, message.format(limit=limit))

    async def _body(self, headers: dict[bytes, bytes], receive: Any) -> bytes | None:
        limit = self.limits.max_body_bytes
        self._declared(headers, limit)
        try:
            async with asyncio.timeout(self.limits.body_timeout_seconds):
                return await _read_body(receive, limit)
        except TimeoutError:
            raise HttpError(408, "the request body did not arrive within "
                                 f"{self.limits.body_timeout_seconds:g} s") from None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body (413 past ``limit``); None if the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body over the {limit:,}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _closing_on_error(send: Any) -> Any:
    """``send`` that closes the connection after an error answer (the body may be unread)."""
    async def closing(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"connection", b"close")]}
        await send(message)

    return closing


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _answer(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]],
                  *, close: bool) -> None:
    """An answer from the wrapper itself; ``close``: the body may be unread, end the
    connection rather than drain it."""
    body = encode(payload)
    extra = [(b"connection", b"close")] if close else []
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers, *extra]})
    await send({"type": "http.response.body", "body": body})


def header_timeout_protocol(seconds: float) -> Any:
    """uvicorn's HTTP protocol (httptools) with a deadline for each request's headers.

    uvicorn times out idle keep-alive connections only once some data arrives, and never a
    connection that trickles its headers; with this class a connection whose next request
    headers are not complete ``seconds`` after it opened (or after its last answer) is
    closed. A connection whose request line and headers pass ``MAX_HEAD_BYTES`` before they
    are complete is answered 431 and closed: httptools buffers header values without a limit,
    so 74 MB of one header took 74 MB of memory and stalled the event loop. Falls back to
    uvicorn's default when httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is a dependency of uvicorn[standard]
        return "auto"

    class HeaderDeadline(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _in_head = True  # reading a request line and headers (not a body)
        _head_bytes = 0  # bytes received since this request's head began

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # still in a head (a completed one reset the count) and past the limit
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
                self._too_large()

        def _too_large(self) -> None:
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # no answer under way
                self.transport.write(TOO_LARGE)
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.pipeline and not self.transport.is_closing():
                self._arm()

    return HeaderDeadline
