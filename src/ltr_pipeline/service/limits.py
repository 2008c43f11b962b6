"""Bounds on what one request may cost: its body's size (`LTR_MAX_BODY_BYTES`), and pages rendered once for many
requests (`PageCache`, `LTR_DASHBOARD_CACHE_SECONDS`).

`read_body` reads a request body from the ASGI stream and stops as soon as it passes the limit, whatever the
Content-Length said (chunked bodies have none, and a client can lie). `BodyLimit` is the pure ASGI middleware that
applies it to every request with a body that reaches FastAPI; `/ltr/rank` is answered before it, by `RankEndpoint`,
which reads its own body with `read_body` (one layer less on the hot path). A declared or actual size over the limit
is answered 413 before any route runs, counted in `ltr_bad_requests_total` and logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog

log = structlog.get_logger("ltr_pipeline.service")
TOO_LARGE = object()  # read_body's answer when the body passed the limit
GONE = object()  # ... when the client disconnected first


def declared_length(scope: dict[str, Any]) -> int | None:
    """The Content-Length header as a number; None when absent; -1 when it is not a number."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes | object:
    """The whole body, or TOO_LARGE as soon as more than `limit` bytes have come, or GONE."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def limited_body(scope: dict[str, Any], receive: Any, send: Any, limit: int,
                       refused: Callable[[], None]) -> bytes | None:
    """The request's body; None when it was refused (413 over `limit`, declared or read; 400 for a Content-Length
    that is not a number: answered, counted with `refused` and logged) or the client left."""
    declared = declared_length(scope)
    status, detail = 413, f"body larger than {limit} bytes"
    if declared is not None and declared < 0:
        status, detail = 400, "Content-Length is not a number"
    elif declared is None or declared <= limit:
        body = await read_body(receive, limit)
        if body is GONE:
            return None
        if isinstance(body, bytes):
            return body
    refused()
    log.warning("request.refused", path=scope["path"], status=status, content_length=declared, limit=limit)
    payload = orjson.dumps({"detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
    return None


class BodyLimit:
    """Pure ASGI middleware: a body over `limit` bytes is refused with 413 before the app sees the request."""

    def __init__(self, app: Any, limit: int, refused: Callable[[], None]) -> None:
        self.app, self.limit, self.refused = app, limit, refused

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = await limited_body(scope, receive, send, self.limit, self.refused)
        if body is None:
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


class PageCache:
    """A page rendered in a thread at most once per `ttl` seconds, whatever the number of clients asking: one
    renders, the others wait for it and share it. The history page over a year of runs takes about 100 ms of CPU,
    which clients looping on it would otherwise take from the rankings."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._page: str | None = None
        self._rendered_at = 0.0

    async def get(self, render: Callable[[], str]) -> str:
        async with self._lock:
            if self._page is None or time.monotonic() - self._rendered_at >= self.ttl:
                self._page = await asyncio.to_thread(render)
                self._rendered_at = time.monotonic()
            return self._page
