"""The worker processes that run math-verify, so that a check which runs too long can really be ended.

sympy can hold the GIL for minutes in a single C call (`10^{10^{8}}` compared with `3`): no thread-based timeout
and no `signal.alarm` can end that in the calling process. Checks that need sympy go to a few worker processes,
and a worker whose check passes its time bound is killed and replaced.

How this departs from `multiprocessing` (and pebble, which this replaced):
- Workers are fresh interpreters running `rapid_agent/_math_check.py` as their main module, speaking JSON lines
  over their stdin/stdout. They never re-import the caller's `__main__`, so checks give the same verdict from a
  script, a script without a `__main__` guard, a heredoc on stdin, `python -c`, a REPL, a notebook, a thread, a
  forked child or a process started by spawn. A worker imports math-verify from the caller's own `sys.path` and
  nothing of this package, so a source checkout in the working folder cannot shadow the installed library.
- A check's time bound counts the CPU time its worker spent on it, not wall time: on a loaded machine (more busy
  processes than cores) a check gets the same budget of work as on an idle one, so the verdict does not depend on
  load, and time spent waiting for a free worker or for one to start counts for nothing. A generous wall-clock
  backstop (`WALL_FACTOR` times the bound) ends a check that gets no CPU at all; that check is undecided.
- An infrastructure failure (a worker that cannot start, dies twice on one check, or the pool stopped under a
  check) is `WorkerError`, never a verdict: `rapid_agent.answers` turns it into an undecided check
  (`correct=None`). A timeout is `TimeoutError`, the check's own fault.
- The pool starts on the first check that needs it (`import rapid_agent` starts nothing), is small (at most 4
  workers, fewer when several ranks of an `accelerate`/`torchrun` job share the machine's CPUs; the environment
  variable `RAPID_ANSWER_WORKERS` overrides), belongs to the process that made it (a forked child starts its own)
  and is stopped at exit. Workers die with their parent (and exit when their stdin closes).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

WORKER_MODULE = "rapid_agent._math_check"
MAX_WORKERS = 4
#: a worker is replaced after this many checks, so that sympy's caches cannot grow without bound over a long run
MAX_TASKS_PER_WORKER = 10_000
#: a check that got no more than its CPU budget in this many times its bound (plus `WALL_SLACK_S`) is undecided
WALL_FACTOR = 10.0
WALL_SLACK_S = 10.0
#: how long a worker may take to start (import sympy and math-verify) before the start counts as failed
START_TIMEOUT_S = 120.0
#: after workers failed to start twice in a row, checks fail at once for this long instead of each trying again
START_BACKOFF_S = 5.0
#: how often a busy worker's CPU time is read
POLL_S = 0.02
#: the environment variable naming the interpreter for the workers (default: `sys.executable`)
PYTHON_ENV = "RAPID_ANSWER_PYTHON"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class WorkerError(RuntimeError):
    """The check could not run: no worker could start, a worker died, or the pool was stopped."""


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


# --- one worker process ---------------------------------------------------------------------------------------


def _readable(stream: Any, timeout_s: float) -> bool:
    """Whether `stream` has data (or EOF) within `timeout_s`. poll, not select: select refuses descriptors
    numbered 1024 and up, which a long-lived process holding many files reaches."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(stream, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(timeout_s * 1000))
    return bool(select.select([stream], [], [], timeout_s)[0])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def _worker_env() -> dict[str, str]:
    """The caller's environment, with its `sys.path` first on PYTHONPATH: the worker imports the library (and
    math-verify) from wherever the caller did, also when a notebook or a test put it on `sys.path` at run time."""
    env = dict(os.environ)
    paths = [os.path.abspath(p or os.curdir) for p in sys.path if isinstance(p, str)]
    known = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, *filter(None, known.split(os.pathsep))]))
    return env


#: runs the worker module's file as `__main__` with the caller's working folder off `sys.path` (python -c puts it
#: first): a folder holding another `rapid_agent` (a source checkout beside an installed wheel) cannot shadow it
_BOOT = "import runpy, sys\nif sys.path and sys.path[0] == '': del sys.path[0]\nrunpy.run_path(sys.argv[1], run_name='__main__')"


def _worker_args() -> list[str]:
    """How the worker starts: its module's file run by path (so the worker imports math-verify and nothing of the
    package around it), or `-m` where the module is not a plain file (a zip, say)."""
    spec = importlib.util.find_spec(WORKER_MODULE)
    origin = spec.origin if spec is not None else None
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        return ["-c", _BOOT, origin]
    return ["-m", WORKER_MODULE]


class _Worker:
    """One `python -m rapid_agent._math_check` process: one request at a time, one JSON line each way."""

    def __init__(self) -> None:
        python = os.environ.get(PYTHON_ENV) or sys.executable
        if not python:
            raise WorkerError(f"cannot start answer-check workers: sys.executable is empty; set {PYTHON_ENV}")
        self.stderr = tempfile.TemporaryFile()  # read back only to explain a failed start or a crash
        try:
            self.process = subprocess.Popen(
                [python, *_worker_args()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=_worker_env(),
            )
        except OSError as exc:
            self.stderr.close()
            raise WorkerError(f"cannot start answer-check workers with {python!r}: {exc}") from exc
        self.tasks = 0
        ready = self._read(time.monotonic() + START_TIMEOUT_S)
        if not (isinstance(ready, dict) and ready.get("ready")):
            why = self._why(ready)
            self.kill()
            raise WorkerError(f"an answer-check worker did not start ({why})")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, deadline: float) -> Any:
        """The next reply, or "eof" when the worker died, or "late" past `deadline`."""
        out = self.process.stdout
        assert out is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "late"
            if _readable(out, min(left, 1.0)):
                line = out.readline()
                return json.loads(line) if line else "eof"

    def _why(self, reply: Any) -> str:
        if reply == "late":
            return f"no answer in {START_TIMEOUT_S:g} s"
        try:
            code = self.process.wait(timeout=5)
            self.stderr.seek(0)
            tail = self.stderr.read()[-1500:].decode("utf-8", "replace").strip()
        except (OSError, ValueError, subprocess.TimeoutExpired):  # closed already, or not gone yet
            code, tail = self.process.poll(), ""
        return f"exit code {code}" + (f": {tail}" if tail else "")

    def run(self, function: str, args: tuple, timeout_s: float) -> tuple[str, Any]:
        """("ok", result) | ("raised", message) | ("timeout", cpu seconds) | ("stalled", wall seconds) |
        ("died", why). A check past its CPU or wall bound is killed here."""
        self.tasks += 1
        cpu_at_start = _cpu_seconds(self.pid)
        started = time.monotonic()
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps({"function": function, "args": args}).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            return "died", self._why("eof")
        backstop = started + timeout_s * WALL_FACTOR + WALL_SLACK_S
        while True:
            reply = self._read(min(time.monotonic() + POLL_S, backstop))
            if reply == "eof":
                return "died", self._why(reply)
            if reply != "late":
                return ("ok", reply["result"]) if "result" in reply else ("raised", reply["error"])
            now = _cpu_seconds(self.pid)
            used = now - cpu_at_start if now is not None and cpu_at_start is not None else None
            if used is None and time.monotonic() - started > timeout_s:  # no CPU clock here: wall time
                used = time.monotonic() - started
            if used is not None and used > timeout_s:
                self.kill()
                return "timeout", used
            if time.monotonic() >= backstop:
                self.kill()
                return "stalled", time.monotonic() - started

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL: sympy inside one C call runs no signal handler
        self.process.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout, self.stderr):
            try:
                pipe.close()
            except (OSError, AttributeError):
                pass


# --- the pool -------------------------------------------------------------------------------------------------


@dataclass
class _Task:
    function: str
    args: tuple
    timeout_s: float
    future: Future = field(default_factory=Future)


_STOP = object()


class _Pool:
    """`size` threads, each owning one worker process, taking checks from one queue."""

    def __init__(self, size: int) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.stopped = False
        self.lock = threading.Lock()
        self.workers: dict[int, _Worker] = {}  # slot -> its live worker
        self.start_failures = 0  # in a row
        self.start_failure: tuple[float, str] | None = None  # the last one: when, and why
        self.threads = [
            threading.Thread(target=self._serve, args=(slot,), name=f"answer-check-{slot}", daemon=True)
            for slot in range(size)
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, function: str, args: tuple, timeout_s: float) -> Future:
        task = _Task(function, args, timeout_s)
        with self.lock:
            if self.stopped:
                _fail(task.future, WorkerError("the answer-check pool was stopped"))
            else:
                self.queue.put(task)
        return task.future

    def _worker(self, slot: int) -> _Worker:
        """This slot's worker, started if it has none. Workers start only in their slot's thread, which lives as
        long as the pool (a worker dies with the thread that started it: PR_SET_PDEATHSIG)."""
        worker = self.workers.get(slot)
        if worker is not None and worker.alive():
            return worker
        failure = self.start_failure
        if self.start_failures >= 2 and failure is not None and time.monotonic() - failure[0] < START_BACKOFF_S:
            raise WorkerError(failure[1])
        try:
            worker = _Worker()
        except WorkerError as exc:
            self.start_failures += 1
            self.start_failure = (time.monotonic(), str(exc))
            raise
        self.start_failures = 0
        with self.lock:
            if self.stopped:
                worker.kill()
                raise WorkerError("the answer-check pool was stopped")
            self.workers[slot] = worker
        return worker

    def _serve(self, slot: int) -> None:
        try:
            self._worker(slot)  # start at once: the first batch finds its workers ready
        except Exception:
            pass  # a start failure is remembered in start_failure; the first check reports it
        while True:
            task = self.queue.get()
            if task is _STOP:
                break
            if task.future.set_running_or_notify_cancel():
                try:
                    self._run(slot, task)
                except Exception as exc:  # a bug here must cost one check, never the slot (its queue would stall)
                    _fail(task.future, WorkerError(f"the answer-check pool failed: {type(exc).__name__}: {exc}"))
        worker = self.workers.pop(slot, None)
        if worker is not None:
            worker.kill()

    def _run(self, slot: int, task: _Task) -> None:
        why = ""
        for _ in range(2):  # a worker that died under a check (killed from outside, out of memory): once more
            try:
                worker = self._worker(slot)
            except WorkerError as exc:
                _fail(task.future, exc)
                return
            outcome, value = worker.run(task.function, task.args, task.timeout_s)
            if outcome == "ok":
                _resolve(task.future, value)
            elif outcome == "raised":
                _fail(task.future, ValueError(value))
            elif outcome == "timeout":
                _fail(task.future, TimeoutError(f"the check used {value:.2f} s of CPU, past its {task.timeout_s:g} s"))
            elif outcome == "stalled":
                message = f"the check got less than {task.timeout_s:g} s of CPU in {value:.0f} s (machine overloaded)"
                _fail(task.future, WorkerError(message))
            else:
                why = value
                worker.kill()
                if self.stopped:
                    _fail(task.future, WorkerError("the answer-check pool was stopped"))
                    return
                continue
            if worker.tasks >= MAX_TASKS_PER_WORKER:
                worker.kill()
            return
        _fail(task.future, WorkerError(f"the answer-check worker died twice on this check ({why})"))

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            workers = list(self.workers.values())
        while True:  # fail what no worker has taken yet
            try:
                task = self.queue.get_nowait()
            except queue.Empty:
                break
            if task is not _STOP and task.future.set_running_or_notify_cancel():
                _fail(task.future, WorkerError("the answer-check pool was stopped"))
        for _ in self.threads:
            self.queue.put(_STOP)
        for worker in workers:  # a check in progress sees its worker die, and fails as stopped
            if worker.alive():
                worker.process.kill()

    def forget(self) -> None:
        """In a forked child: close the inherited pipes of the parent's workers, touching nothing else."""
        for worker in self.workers.values():
            worker.close_pipes()


def _resolve(future: Future, value: Any) -> None:
    try:
        future.set_result(value)
    except InvalidStateError:
        pass


def _fail(future: Future, error: BaseException) -> None:
    try:
        future.set_exception(error)
    except InvalidStateError:
        pass


# --- this process's pool --------------------------------------------------------------------------------------

_lock = threading.Lock()
_pool: _Pool | None = None
_workers: int | None = None


def configure(workers: int | None = None) -> None:
    """Use `workers` processes from the next check on (None: the default); stops the current pool."""
    global _workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    shutdown()
    _workers = workers


def submit(function: str, args: tuple, timeout_s: float) -> Future:
    """Run `function(*args)` of the worker module in a worker process. Its future raises `TimeoutError` (and the
    worker is killed) when the call used more than `timeout_s` seconds of CPU, `WorkerError` when it could not
    run, `ValueError` with the message when the function raised. Never blocks and never raises itself."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool(_workers or default_workers())
        pool = _pool
    return pool.submit(function, tuple(args), timeout_s)


def worker_pids() -> set[int]:
    """Process ids of the live workers of this process (for tests and diagnostics)."""
    pool = _pool
    if pool is None:
        return set()
    with pool.lock:
        return {w.pid for w in pool.workers.values() if w.alive()}


def is_running() -> bool:
    """Whether this process has a pool (checks decided in-process never start one)."""
    return _pool is not None


def shutdown() -> None:
    """Stop the pool and its workers now (checks in progress fail with `WorkerError`); the next check starts a
    new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.stop()


def _after_fork_in_child() -> None:
    """A forked child (a DataLoader worker, say) must not use its parent's workers: their threads did not survive
    the fork. It closes its copies of their pipes (so a worker still sees its stdin close when the parent exits)
    and starts its own pool on its first check."""
    global _lock, _pool
    _lock = threading.Lock()
    if _pool is not None:
        _pool.forget()
    _pool = None


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
