"""The pool of worker processes that run math-verify, so that a check which runs too long can really be ended.

sympy can hold the GIL for minutes in a single C call (`10^{10^{8}}` compared with `3`): no thread-based timeout
and no `signal.alarm` can end that in the calling process. Checks that need sympy run in pebble's `ProcessPool`,
which kills the worker whose task passes its timeout and starts a new one.

- Workers come from a forkserver (spawn where there is none), never from forking the caller: callers run threads,
  event loops and torch. The forkserver preloads the worker module, so a replacement worker is ready in
  milliseconds instead of re-importing sympy.
- The pool starts on the first check that needs it (`import rapid_agent` starts nothing), is small (at most 4
  workers, fewer when several ranks of an `accelerate`/`torchrun` job share the machine's CPUs; the environment
  variable `RAPID_ANSWER_WORKERS` overrides), belongs to the process that made it (a forked child that checks
  answers makes its own, by spawn) and is stopped at exit.
- No caller waits for ever: a watchdog thread fails every outstanding check of a pool that broke (workers that
  could not start, say) or was stopped, with an error saying so.
"""

from __future__ import annotations

import atexit
import importlib
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pebble import ProcessPool

WORKER_MODULE = "rapid_agent._math_check"
MAX_WORKERS = 4
#: a worker is replaced after this many checks (a fork from the preloaded server: milliseconds), so that sympy's
#: caches cannot grow without bound over a long training run
MAX_TASKS_PER_WORKER = 10_000
#: pebble names its worker processes so; used to list them
WORKER_PROCESS_NAME = "pebble_pool_worker"

WATCH_INTERVAL_S = 0.25
BROKEN = (
    "the answer-check worker processes stopped or could not start (a script that checks answers must guard its "
    "entry point with `if __name__ == '__main__':`, as every multiprocessing program started by spawn must)"
)

_lock = threading.Lock()
_pool: ProcessPool | None = None
_forked = False  # this process is a fork of one that may own the forkserver
_forkserver_broke = False  # a pool from the forkserver broke: later pools start their workers by spawn
_outstanding: _Outstanding | None = None
_workers: int | None = None


def default_workers() -> int:
    """Workers for this process: min(4, CPUs available / ranks on this machine), at least 1."""
    configured = os.environ.get("RAPID_ANSWER_WORKERS")
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ValueError(f"RAPID_ANSWER_WORKERS must be a positive integer, got {configured!r}")
        return int(configured)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = os.environ.get("LOCAL_WORLD_SIZE", "1")
    ranks_here = int(ranks) if ranks.isdigit() and int(ranks) > 0 else 1
    return max(1, min(MAX_WORKERS, cpus // ranks_here))


def configure(workers: int | None = None) -> None:
    """Use `workers` processes from the next check on (None: the default); stops the current pool."""
    global _workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    shutdown()
    _workers = workers


def _init_worker() -> None:
    # pebble's own SIGTERM handler is Python code, which cannot run while sympy is inside one long C call: with
    # the default action the worker ends the moment pebble terminates it
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    importlib.import_module(WORKER_MODULE)  # sympy loads now, not inside the first check's time budget


def _run(function: str, *args: Any) -> Any:
    """Call `function` of the worker module; by name, so the caller never imports sympy to pickle a reference."""
    return getattr(importlib.import_module(WORKER_MODULE), function)(*args)


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods() and not _forked and not _forkserver_broke:
        # the forkserver's socket lives in multiprocessing's temp folder; a /tmp cleaner (or a test) may have removed
        # it, and then no worker could start
        os.makedirs(multiprocessing.util.get_temp_dir(), exist_ok=True)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([WORKER_MODULE])  # takes effect only if the forkserver is not yet running
        return context
    return multiprocessing.get_context("spawn")


class _Outstanding:
    """The futures a pool has not resolved yet, so that they can be failed if the pool dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: set[Future] = set()

    def add(self, future: Future) -> None:
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self.discard)

    def discard(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            futures, self._futures = self._futures, set()
        for future in futures:
            try:
                future.set_exception(error)
            except InvalidStateError:  # it finished meanwhile
                pass

    def __len__(self) -> int:
        return len(self._futures)


def _watch(pool: ProcessPool, outstanding: _Outstanding) -> None:
    """Fail the outstanding checks of `pool` once it is no longer running; end when it is gone and drained."""
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if not pool.active:
            outstanding.fail(BrokenProcessPool(BROKEN))
            return
        with _lock:
            replaced = pool is not _pool
        if replaced and not len(outstanding):
            return


def _current() -> tuple[ProcessPool, _Outstanding]:
    global _pool, _outstanding, _forkserver_broke
    with _lock:
        if _pool is not None and not _pool.active:  # broke (a worker could not start) or was stopped
            _stop(_pool)
            _pool = None
            _forkserver_broke = True  # e.g. a forkserver whose socket folder was removed: spawn from now on
        if _pool is None:
            _pool = ProcessPool(
                max_workers=_workers or default_workers(),
                max_tasks=MAX_TASKS_PER_WORKER,
                initializer=_init_worker,
                context=_context(),
            )
            _outstanding = _Outstanding()
            # multiprocessing runs these before it joins the children of an exiting process; a multiprocessing
            # child skips atexit, and would otherwise wait for ever on the idle workers
            multiprocessing.util.Finalize(None, shutdown, exitpriority=10)
            threading.Thread(target=_watch, args=(_pool, _outstanding), name="answer-pool-watch", daemon=True).start()
        assert _outstanding is not None
        return _pool, _outstanding


def _schedule(function: str, args: tuple, timeout_s: float) -> Future:
    pool, outstanding = _current()
    future = pool.schedule(_run, args=(function, *args), timeout=timeout_s)
    outstanding.add(future)
    return future


def submit(function: str, args: tuple, timeout_s: float) -> Future:
    """Run `function(*args)` of the worker module in the pool; its future raises `TimeoutError` (and the worker
    is killed) when the call runs longer than `timeout_s` seconds once started, `BrokenProcessPool` if the pool
    dies first. Never raises itself: a pool that cannot start is an error in the future."""
    try:
        return _schedule(function, args, timeout_s)
    except RuntimeError:  # the pool broke or was stopped under us: a fresh one, once
        shutdown()
    try:
        return _schedule(function, args, timeout_s)
    except RuntimeError as error:
        failed: Future = Future()
        failed.set_exception(BrokenProcessPool(f"{BROKEN}: {error!r}"))
        return failed


def worker_pids() -> set[int]:
    """Process ids of the live pool workers of this process (for tests and diagnostics)."""
    return {p.pid for p in multiprocessing.active_children() if p.name == WORKER_PROCESS_NAME and p.pid}


def is_running() -> bool:
    """Whether this process has a pool (checks decided in-process never start one)."""
    return _pool is not None


def shutdown() -> None:
    """Stop the pool and its workers now; the next check that needs one starts a new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        _stop(pool)


def _stop(pool: ProcessPool) -> None:
    pool.stop()
    try:
        pool.join()  # terminates the workers
    except Exception:  # a pool that broke may fail to join; its workers die with their parent
        pass


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker, say) must not touch its parent's pool, and cannot use its parent's
    forkserver (`os.waitpid` on a process that is not its child fails): it starts its own pool by spawn."""
    global _lock, _pool, _outstanding, _forked
    _lock, _pool, _outstanding, _forked = threading.Lock(), None, None, True


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
