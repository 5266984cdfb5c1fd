"""Micro-batching under the engines: concurrent single requests become one batched engine call.

Graph runs each submit one request. A `MicroBatcher` collects requests while they keep arriving (a batch closes
once no request came for `window_s`, after at most `max_wait_s`, or at the engine's `max_batch_size`), groups them
by generation settings and makes one engine call per group. While an engine is busy, new requests keep
accumulating, so a slow local model sees few large calls rather than many small ones. The batcher runs its own event
loop in a daemon thread so that sync callers (any thread) and async callers (any loop) share the same batches.

An engine whose one call per request costs what a batched call does (a server that batches itself, `openai:`)
sets `batch_window_s = 0`: what arrives in one pass of the batcher's loop still goes as one call, but nothing waits
for more. A debounce window guesses when a batch is complete; a caller that knows (`solve_batch` starts N runs at once)
says so with a `Cohort`: while one is current (a context variable), its runs' requests go out as soon as every run
of the cohort that is still going waits on this engine, so a batch of N reaches each engine as one call, however
unevenly the runs arrive. The window stays as the fallback that keeps a cohort from waiting forever.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig

#: batch sizes kept for inspection; a long-running server must not grow this list without bound
MAX_STATS = 10_000
DEFAULT_WINDOW_S = 0.05
DEFAULT_MAX_WAIT_S = 0.5
#: fallback for cohort requests: a cohort normally dispatches itself once complete; this only bounds a stall
COHORT_WAIT_S = 5.0
#: the context a request was submitted from (see `call_origins`)
Origin = contextvars.Context | None


class Cohort:
    """Graph runs started together, `size` of them. Call `finish()` once per run when it ends (whatever the outcome).

    A run is *waiting* from the moment its request reaches a batcher until its result is delivered. When every run
    still going is waiting (on this engine or another), none is about to send anything more, so each batcher sends
    what the cohort has queued at once."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a cohort needs at least one run, got {size!r}")
        self.alive = size
        self.waiting = 0
        self._lock = threading.Lock()
        self._batchers: weakref.WeakSet[MicroBatcher] = weakref.WeakSet()

    @property
    def settled(self) -> bool:
        """Whether no run of the cohort is between engine calls."""
        return self.waiting >= self.alive

    def finish(self) -> None:
        with self._lock:
            self.alive -= 1
        self._poke()

    def _enter(self, batcher: MicroBatcher) -> None:
        with self._lock:
            self.waiting += 1
            self._batchers.add(batcher)
        self._poke()

    def _leave(self) -> None:
        with self._lock:
            self.waiting -= 1

    def _poke(self) -> None:
        if self.settled:
            for batcher in list(self._batchers):
                batcher.poke(self)


#: the cohort whose runs the current context belongs to (set by `solve_batch` around its runs)
current_cohort: contextvars.ContextVar[Cohort | None] = contextvars.ContextVar("rapid_cohort", default=None)
#: during an engine call, the contexts its requests were submitted from (in order), so that a wrapper can tell
#: which runs asked for the call (tracing hangs the call's span under the asking graph node)
call_origins: contextvars.ContextVar[tuple[contextvars.Context, ...]] = contextvars.ContextVar(
    "rapid_call_origins", default=()
)


class MicroBatcher:
    """Coalesces requests for one engine. Use `submit`/`asubmit` for one request, `submit_many` for a list.

    It runs its own event loop on a daemon thread from the first request; the loop stops and closes (its thread
    ends, its descriptors are freed) at `close()` or when the batcher is collected, i.e. once nothing refers to
    it or to its engine (`get_batcher` keeps it on the engine)."""

    def __init__(
        self, engine: Engine, *, window_s: float | None = None, max_wait_s: float = DEFAULT_MAX_WAIT_S
    ) -> None:
        self.engine = engine
        self._spec = getattr(engine, "spec", type(engine).__name__)
        if window_s is None:
            window_s = getattr(engine, "batch_window_s", None)
        self.window_s = DEFAULT_WINDOW_S if window_s is None else window_s
        self.max_wait_s = max_wait_s
        if self.window_s < 0 or self.max_wait_s < 0:
            raise ValueError(f"window_s and max_wait_s must be >= 0, got {self.window_s!r} and {self.max_wait_s!r}")
        self.num_calls = 0
        #: the most recent batch sizes, in order (at most MAX_STATS), and how many calls had each size, ever
        self.batch_sizes: list[int] = []
        self.size_counts: collections.Counter[int] = collections.Counter()
        self._pending: dict[GenerationConfig, list[tuple[ChatRequest, asyncio.Future, Cohort | None, Origin]]] = {}
        self._timers: dict[GenerationConfig, asyncio.Handle] = {}
        self._opened: dict[GenerationConfig, float] = {}  # when the oldest waiting request of a group arrived
        self._loose: set[GenerationConfig] = set()  # the groups with a request from outside any cohort waiting
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start_lock = threading.Lock()
        # requests on their way to this batcher's loop, and results on their way back to each caller's loop
        self._inbox: list[_Ticket] = []
        self._inbox_lock = threading.Lock()
        #: the callers' loops that have a wake-up of this batcher's loop scheduled for the end of their pass
        self._waking: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._outboxes: dict[asyncio.AbstractEventLoop, list[tuple[_Ticket, object]]] = {}
        self._outbox_lock = threading.Lock()

    def close(self) -> None:
        """Stop the batcher's loop (requests still queued fail); a later request starts a new one."""
        with self._start_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            _stop_loop(loop)
        with self._inbox_lock:
            tickets, self._inbox = self._inbox, []
            self._waking.clear()  # their wake-ups went to the stopped loop
        for ticket in tickets:  # never reached the loop
            _call_soon(ticket.caller, ticket.future.cancel)

    # -- public API --------------------------------------------------------------------------------------------
    def submit(self, request: ChatRequest, gen: GenerationConfig) -> Completion:
        """Blocking submit from any thread that is not running this batcher's loop. Raises EngineError."""
        coro = self._enqueue(request, gen, current_cohort.get(), contextvars.copy_context())
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    async def asubmit(self, request: ChatRequest, gen: GenerationConfig) -> Completion:
        """Submit from any event loop. Raises EngineError when the request failed.

        Requests and results cross between the two loops in bursts: what one pass of a loop sends goes with one
        wake-up of the other, at the end of the pass (a wake-up per request, a write to a loop's self-pipe each way
        and a GIL hand-over, cost more CPU than the rest of a graph run: see benchmarks/overhead.py)."""
        caller = asyncio.get_running_loop()
        ticket = _Ticket(
            request, gen, current_cohort.get(), contextvars.copy_context(), caller, caller.create_future()
        )
        loop = self._ensure_loop()
        with self._inbox_lock:
            self._inbox.append(ticket)
            # a wake-up per caller's loop until the batcher takes the inbox: another loop's pending wake-up is not
            # relied on, since that loop may stop before its pass ends and never send it
            first = caller not in self._waking
            if first:
                self._waking.add(caller)
        if first:  # once this loop's pass is over, so that every request it makes goes with this wake-up
            caller.call_soon(_call_soon, loop, self._take_inbox)
        try:
            return await ticket.future
        except asyncio.CancelledError:  # the caller gave up: its request leaves the queue if still there
            if ticket.future.cancelled():
                _call_soon(loop, ticket.cancel)
            raise

    def poke(self, cohort: Cohort) -> None:
        """A run of `cohort` ended: its waiting requests may now be all there are (thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._check_cohort, cohort)

    async def asubmit_many(
        self, requests: Sequence[ChatRequest], gen: GenerationConfig
    ) -> list[Completion | Exception]:
        """Submit a list at once; failures come back as exceptions in place, never raised."""
        return await asyncio.gather(*(self.asubmit(r, gen) for r in requests), return_exceptions=True)

    def submit_many(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        loop = self._ensure_loop()
        cohort, origin = current_cohort.get(), contextvars.copy_context()
        futures = [asyncio.run_coroutine_threadsafe(self._enqueue(r, gen, cohort, origin), loop) for r in requests]
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
        self.size_counts = collections.Counter()

    # -- the batcher's own loop --------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                # in an empty context: the loop's own handles keep the context they were made in, and the caller's
                # (a graph node's: its config, the RapidContext, this engine) would keep the engine alive forever
                loop = contextvars.Context().run(asyncio.new_event_loop)
                with _closers_lock:
                    _batcher_loops.add(loop)
                thread = threading.Thread(target=_run_loop, args=(loop,), name=f"batcher:{self._spec}", daemon=True)
                thread.start()
                self._loop = loop
                weakref.finalize(self, _stop_loop, loop).atexit = False
        return self._loop

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            tickets, self._inbox = self._inbox, []
            self._waking.clear()  # what they would wake for is taken
        loop = asyncio.get_running_loop()
        for ticket in tickets:
            if not ticket.future.cancelled():
                ticket.task = loop.create_task(self._serve(ticket))

    async def _serve(self, ticket: _Ticket) -> None:
        try:
            outcome = await self._enqueue(ticket.request, ticket.gen, ticket.cohort, ticket.origin)
        except asyncio.CancelledError as exc:  # the caller gave up, or this loop is stopping
            outcome = exc
            raise
        except Exception as exc:
            outcome = exc
        finally:
            if not ticket.future.cancelled():
                self._reply(ticket, outcome)

    def _reply(self, ticket: _Ticket, outcome: object) -> None:
        """Hand a result (or exception) back to the caller's loop, with the others of its burst."""
        caller = ticket.caller
        with self._outbox_lock:
            box = self._outboxes.setdefault(caller, [])
            box.append((ticket, outcome))
            first = len(box) == 1
        if first:  # after this loop's pass, with the rest of the results it delivers
            asyncio.get_running_loop().call_soon(self._wake_caller, caller)

    def _wake_caller(self, caller: asyncio.AbstractEventLoop) -> None:
        if not _call_soon(caller, self._deliver, caller):
            with self._outbox_lock:  # the caller's loop is closed: nobody waits
                self._outboxes.pop(caller, None)

    def _deliver(self, caller: asyncio.AbstractEventLoop) -> None:
        with self._outbox_lock:
            box = self._outboxes.pop(caller, [])
        for ticket, outcome in box:
            future = ticket.future
            if future.done():
                continue
            if isinstance(outcome, asyncio.CancelledError):
                future.cancel()
            elif isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _enqueue(
        self, request: ChatRequest, gen: GenerationConfig, cohort: Cohort | None, origin: Origin = None
    ) -> Completion:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        queue = self._pending.setdefault(gen, [])
        queue.append((request, future, cohort, origin))
        if cohort is None:
            self._loose.add(gen)
        if len(queue) >= self.engine.max_batch_size:
            self._dispatch(gen)
        elif gen in self._loose and self.window_s == 0:
            # nothing waits for more: what arrived in this pass of the loop goes out at its end, as one call
            if type(self._timers.get(gen)) is not asyncio.Handle:
                self._cancel_timer(gen)
                self._timers[gen] = loop.call_soon(self._dispatch, gen)
        else:
            # debounce: each arrival extends the window, up to max_wait_s after the first one; a cohort dispatches
            # itself once settled (below), so for it the window only bounds a stall (unless a request from outside
            # any cohort waits in the same group: that one keeps its window)
            patient = gen not in self._loose
            window, most = (COHORT_WAIT_S, COHORT_WAIT_S) if patient else (self.window_s, self.max_wait_s)
            opened = self._opened.setdefault(gen, loop.time())
            self._cancel_timer(gen)
            deadline = min(loop.time() + window, opened + most)
            self._timers[gen] = loop.call_at(deadline, self._dispatch, gen)
        if cohort is None:
            return await future
        cohort._enter(self)
        try:
            return await future
        finally:
            cohort._leave()

    def _check_cohort(self, cohort: Cohort) -> None:
        if not cohort.settled:
            return
        for gen in [g for g, queue in self._pending.items() if any(item[2] is cohort for item in queue)]:
            self._dispatch(gen)

    def _cancel_timer(self, gen: GenerationConfig) -> None:
        timer = self._timers.pop(gen, None)
        if timer is not None:
            timer.cancel()

    def _dispatch(self, gen: GenerationConfig) -> None:
        self._cancel_timer(gen)
        self._opened.pop(gen, None)
        self._loose.discard(gen)
        queue = self._pending.get(gen)
        engine = self.engine
        while queue and self._in_flight < engine.max_concurrent_calls:
            batch, queue[:] = queue[: engine.max_batch_size], queue[engine.max_batch_size :]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._call(gen, batch))
        if not queue:
            self._pending.pop(gen, None)

    async def _call(
        self, gen: GenerationConfig, batch: list[tuple[ChatRequest, asyncio.Future, Cohort | None, Origin]]
    ) -> None:
        self.num_calls += 1
        self.size_counts[len(batch)] += 1
        self.batch_sizes.append(len(batch))
        if len(self.batch_sizes) > MAX_STATS:
            del self.batch_sizes[: MAX_STATS // 2]
        call_origins.set(tuple(item[3] for item in batch if item[3] is not None))  # this task's own context
        engine = self.engine
        try:
            results = await traced(engine).agenerate([item[0] for item in batch], gen)
            if len(results) != len(batch):
                raise EngineError(f"{engine!r} returned {len(results)} outputs for {len(batch)} requests")
        except Exception as exc:
            results = [exc] * len(batch)
        finally:
            self._in_flight -= 1
        for (_, future, _, _), result in zip(batch, results):
            if future.done():
                continue
            if not isinstance(result, Exception):
                result = malformed(engine, result) or result
            if isinstance(result, Exception):
                error = result if isinstance(result, EngineError) else EngineError(f"{self._spec}: {result}")
                future.set_exception(error)
            else:
                future.set_result(result)
        # requests that queued up while the engine was busy go out now, without waiting for another window
        for pending_gen in list(self._pending):
            self._dispatch(pending_gen)


class _Ticket:
    """One `asubmit` request on its way: what to send, for whom, and where the answer goes."""

    __slots__ = ("request", "gen", "cohort", "origin", "caller", "future", "task")

    def __init__(
        self,
        request: ChatRequest,
        gen: GenerationConfig,
        cohort: Cohort | None,
        origin: Origin,
        caller: asyncio.AbstractEventLoop,
        future: asyncio.Future,
    ) -> None:
        self.request, self.gen, self.cohort, self.origin = request, gen, cohort, origin
        self.caller, self.future = caller, future
        self.task: asyncio.Task | None = None

    def cancel(self) -> None:
        """On the batcher's loop: drop the request (its task) if it has one."""
        if self.task is not None:
            self.task.cancel()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> bool:
    """`call_soon_threadsafe`, False when `loop` is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


#: the micro-batchers' own loops, and what to close on each before it closes (see `at_loop_end`)
_batcher_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_loop_closers: dict[asyncio.AbstractEventLoop, list[Callable[[], Awaitable[object]]]] = {}
_closers_lock = threading.Lock()


def is_batcher_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` is a micro-batcher's own (one whose end this module controls)."""
    return loop in _batcher_loops


def at_loop_end(loop: asyncio.AbstractEventLoop, close: Callable[[], Awaitable[object]]) -> bool:
    """On a micro-batcher's own loop, have `close()` awaited there once the loop stops, before it closes (an
    engine's connection pool for that loop), and return True. Any other loop is its owner's, who decides when it
    ends: nothing is registered, and False says so."""
    with _closers_lock:
        if loop not in _batcher_loops or loop.is_closed():
            return False
        _loop_closers.setdefault(loop, []).append(close)
    return True


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_forever()
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            _run_to_end(loop, asyncio.gather(*tasks, return_exceptions=True))
        with _closers_lock:
            closers = _loop_closers.pop(loop, [])
        for close in closers:
            try:
                _run_to_end(loop, close())
            except Exception:  # noqa: S110 - a pool that fails to close must not keep the others open
                pass
        _run_to_end(loop, loop.shutdown_default_executor())
        loop.close()


def _run_to_end(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[object]) -> None:
    """`loop.run_until_complete(awaitable)` on a loop that has stopped, which a stop request arriving meanwhile (one
    already queued when the loop first stopped) does not cut short: the clean-up runs to its end."""
    future = asyncio.ensure_future(awaitable, loop=loop)
    while True:
        try:
            loop.run_until_complete(future)
            return
        except RuntimeError:
            if future.done() or loop.is_closed():
                raise


def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # closed already
        pass


def malformed(engine: Engine, result: object) -> EngineError | None:
    """The error for an engine result that is not a completion with text (a broken engine or adapter), else None:
    an output the engine never produced must not be scored as a wrong answer."""
    if isinstance(result, Completion) and isinstance(result.text, str):
        return None
    what = f"a completion whose text is {type(result.text).__name__}" if isinstance(result, Completion) else result
    return EngineError(f"{engine.spec}: returned a malformed result ({what!r:.120})")


#: wrappers applied around every engine call (tracing registers one); they wrap, they don't leak
engine_wrappers: list[Callable[[Engine], Engine]] = []


def traced(engine: Engine) -> Engine:
    """`engine` inside every registered wrapper; looked up per call, so tracing enabled later still applies."""
    for wrap in engine_wrappers:
        engine = wrap(engine)
    return engine


_BATCHER_ATTRIBUTE = "_rapid_batcher"
_batchers_lock = threading.Lock()


def get_batcher(engine: Engine) -> MicroBatcher:
    """The one batcher of `engine`, so every graph run that uses the engine shares its batches. It lives on the
    engine (a cycle the garbage collector frees with the engine; a weak map from engine to batcher could not: the
    batcher refers to its engine)."""
    with _batchers_lock:
        batcher = engine.__dict__.get(_BATCHER_ATTRIBUTE)
        if batcher is None:
            batcher = MicroBatcher(engine)
            setattr(engine, _BATCHER_ATTRIBUTE, batcher)
        return batcher
