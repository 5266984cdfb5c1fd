"""Micro-batching under the engines: concurrent single requests become one batched engine call.

Graph runs (LangGraph `batch` threads or `abatch` tasks) each submit one request. A `MicroBatcher` collects
requests while they keep arriving (a batch closes once no request came for `window_s`, after at most
`max_wait_s`, or at the engine's `max_batch_size`), groups them by generation settings and makes one engine call
per group. While an engine is busy, new requests keep accumulating, so a slow
local model sees few large calls rather than many small ones. The batcher runs its own event loop in a daemon
thread so that sync callers (any thread) and async callers (any loop) share the same batches.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Sequence

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig

DEFAULT_WINDOW_S = 0.05
DEFAULT_MAX_WAIT_S = 0.5


class MicroBatcher:
    """Coalesces requests for one engine. Use `submit`/`asubmit` for one request, `submit_many` for a list."""

    def __init__(
        self, engine: Engine, *, window_s: float = DEFAULT_WINDOW_S, max_wait_s: float = DEFAULT_MAX_WAIT_S
    ) -> None:
        self.engine = engine
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self.num_calls = 0
        self.batch_sizes: list[int] = []
        self._pending: dict[GenerationConfig, list[tuple[ChatRequest, asyncio.Future]]] = {}
        self._timers: dict[GenerationConfig, asyncio.TimerHandle] = {}
        self._opened: dict[GenerationConfig, float] = {}  # when the oldest waiting request of a group arrived
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------------------------
    def submit(self, request: ChatRequest, gen: GenerationConfig) -> Completion:
        """Blocking submit from any thread that is not running this batcher's loop. Raises EngineError."""
        return asyncio.run_coroutine_threadsafe(self._enqueue(request, gen), self._ensure_loop()).result()

    async def asubmit(self, request: ChatRequest, gen: GenerationConfig) -> Completion:
        """Submit from any event loop. Raises EngineError when the request failed."""
        future = asyncio.run_coroutine_threadsafe(self._enqueue(request, gen), self._ensure_loop())
        return await asyncio.wrap_future(future)

    async def asubmit_many(
        self, requests: Sequence[ChatRequest], gen: GenerationConfig
    ) -> list[Completion | Exception]:
        """Submit a list at once; failures come back as exceptions in place, never raised."""
        return await asyncio.gather(*(self.asubmit(r, gen) for r in requests), return_exceptions=True)

    def submit_many(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        loop = self._ensure_loop()
        futures = [asyncio.run_coroutine_threadsafe(self._enqueue(r, gen), loop) for r in requests]
        out: list[Completion | Exception] = []
        for future in futures:
            try:
                out.append(future.result())
            except Exception as exc:
                out.append(exc)
        return out

    def reset_stats(self) -> None:
        self.num_calls = 0
        self.batch_sizes = []

    # -- the batcher's own loop --------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"batcher:{self.engine.spec}", daemon=True)
                thread.start()
                self._loop = loop
        return self._loop

    async def _enqueue(self, request: ChatRequest, gen: GenerationConfig) -> Completion:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        queue = self._pending.setdefault(gen, [])
        queue.append((request, future))
        if len(queue) >= self.engine.max_batch_size:
            self._dispatch(gen)
        else:
            # debounce: each arrival extends the window, up to max_wait_s after the first one
            opened = self._opened.setdefault(gen, loop.time())
            timer = self._timers.pop(gen, None)
            if timer is not None:
                timer.cancel()
            deadline = min(loop.time() + self.window_s, opened + self.max_wait_s)
            self._timers[gen] = loop.call_at(deadline, self._dispatch, gen)
        return await future

    def _dispatch(self, gen: GenerationConfig) -> None:
        timer = self._timers.pop(gen, None)
        if timer is not None:
            timer.cancel()
        self._opened.pop(gen, None)
        queue = self._pending.get(gen)
        while queue and self._in_flight < self.engine.max_concurrent_calls:
            batch, queue[:] = queue[: self.engine.max_batch_size], queue[self.engine.max_batch_size :]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._call(gen, batch))
        if not queue:
            self._pending.pop(gen, None)

    async def _call(self, gen: GenerationConfig, batch: list[tuple[ChatRequest, asyncio.Future]]) -> None:
        self.num_calls += 1
        self.batch_sizes.append(len(batch))
        try:
            engine = self.engine
            for wrap in engine_wrappers:  # looked up per call, so tracing enabled later still applies
                engine = wrap(engine)
            results = await engine.agenerate([request for request, _ in batch], gen)
            if len(results) != len(batch):
                raise EngineError(f"{self.engine!r} returned {len(results)} outputs for {len(batch)} requests")
        except Exception as exc:
            results = [exc] * len(batch)
        finally:
            self._in_flight -= 1
        for (_, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                error = result if isinstance(result, EngineError) else EngineError(f"{self.engine.spec}: {result}")
                future.set_exception(error)
            else:
                future.set_result(result)
        # requests that queued up while the engine was busy go out now, without waiting for another window
        for pending_gen in list(self._pending):
            self._dispatch(pending_gen)


#: wrappers applied around every engine call (tracing registers one); they wrap, they don't leak
engine_wrappers: list[Callable[[Engine], Engine]] = []

_batchers: weakref.WeakKeyDictionary[Engine, MicroBatcher] = weakref.WeakKeyDictionary()
_batchers_lock = threading.Lock()


def get_batcher(engine: Engine) -> MicroBatcher:
    """The one batcher of `engine`, so every graph run that uses the engine shares its batches."""
    with _batchers_lock:
        batcher = _batchers.get(engine)
        if batcher is None:
            batcher = _batchers[engine] = MicroBatcher(engine)
        return batcher
