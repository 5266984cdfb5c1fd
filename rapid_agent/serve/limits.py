"""Admission and size limits: a bounded queue in front of the pipeline, and a cap on request bodies.

`Gate` lets `max_active` requests run through the pipeline at once (they share the engines' micro-batches, so this
is the batch the server can form) and `max_queue` more wait for a slot; a request beyond both is refused at once
with 429 and a Retry-After estimated from recent latencies, instead of queueing without bound. While the server
drains for shutdown, the gate refuses new requests (503) and tells when the last admitted one has left.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rapid_agent.serve.errors import APIError


class QueueFull(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"the server's queue is full; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


class Draining(Exception):
    """The server is shutting down and takes no new requests."""


class Gate:
    """At most `max_active` requests inside, `max_queue` more waiting. Use from one event loop."""

    def __init__(self, max_active: int, max_queue: int) -> None:
        if max_active < 1 or max_queue < 0:
            raise ValueError(f"need max_active >= 1 and max_queue >= 0, got {max_active!r} and {max_queue!r}")
        self.max_active = max_active
        self.max_queue = max_queue
        self.active = 0
        self.waiting = 0
        self.draining = False
        self._slots: asyncio.Semaphore | None = None
        self._latencies: deque[float] = deque(maxlen=64)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished, queued ones included."""
        return self.active + self.waiting

    async def enter(self) -> None:
        """Wait for a slot. Raises `Draining` or `QueueFull` at once when the request cannot be admitted; every
        successful `enter` must be matched by one `leave`."""
        if self.draining:
            raise Draining()
        if self.in_flight >= self.max_active + self.max_queue:
            raise QueueFull(self.retry_after_s())
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_active)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1

    def leave(self, latency_s: float | None = None) -> None:
        self.active -= 1
        assert self._slots is not None
        self._slots.release()
        if latency_s is not None:
            self._latencies.append(latency_s)

    def retry_after_s(self) -> int:
        """Roughly when a slot frees up: the queue ahead, served `max_active` at a time, at the recent latency."""
        if not self._latencies:
            return 1
        mean = statistics.fmean(self._latencies)
        rounds = max(1.0, self.waiting / self.max_active)
        return int(min(60, max(1, math.ceil(mean * rounds))))


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the server's limit of {limit:,} bytes")


class BodySizeLimit:
    """ASGI middleware: refuse a body over `max_bytes` with 413, by its Content-Length before reading it, or while
    reading a body sent without one (chunked), so an oversized upload is never held in memory whole."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[], None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            if self.on_reject is not None:
                self.on_reject()
            error = APIError(413, BodyTooLarge(self.max_bytes).detail, code="body_too_large")
            response = JSONResponse(error.body().model_dump(), status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)
