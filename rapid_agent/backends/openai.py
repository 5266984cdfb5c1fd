"""An engine for any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, OpenAI itself).

The official `openai` client speaks the protocol: base URL, auth and extra headers, connect and read timeouts,
`extra_body`, typed HTTP errors, server-sent events. It sends over its own aiohttp transport (`openai[aiohttp]`) on
the event loops whose end the engine sees, which every graph run's request goes through (the micro-batcher's), and
posts the body as built here, without the client's per-request typing pass: together a quarter of the CPU a request
of `chat.completions.create` over httpx (`OpenAIOptions.http_transport`; benchmarks/overhead.py). Nothing waits to be
batched (`batch_window_s = 0`): the server batches. This module adds what the client lacks:

- a wall-clock bound on each attempt (`timeout_s`): the client's timeouts are per read, so a server trickling
  bytes could keep one request alive far past its timeout;
- its own retry policy (tenacity): connection errors, timeouts, 408, 429 and 5xx are retried with jittered
  exponential backoff capped at `max_backoff_s`, and a server's Retry-After is honoured up to `max_retry_after_s`.
  The client's own retries are off: its backoff cap is fixed, it refuses (rather than caps) a Retry-After past two
  minutes, and it cannot bound an attempt in wall-clock time;
- per-sample isolation: a request that fails, or whose reply is malformed (see `openai_wire`), becomes an
  `EngineError` in the result list, redacted and bounded; the rest of the batch is unaffected;
- at most `max_concurrency` requests in flight per event loop, one client (one connection pool) per loop and server;
- several servers of one model (`openai:<model>@<url>,<url>,...`): least outstanding requests first, a server that
  cannot be reached taken out while the others carry on (`openai_servers.ServerPool`).

Its settings, and their defaults for long reasoning at scale, are `OpenAIOptions`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import math
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import httpx
import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig, Role, redact
from rapid_agent.backends.batching import at_loop_end, is_batcher_loop
from rapid_agent.backends.images import openai_messages
from rapid_agent.backends.openai_options import OpenAIOptions, aiohttp_available
from rapid_agent.backends.openai_servers import ServerPool
from rapid_agent.backends.openai_wire import ChatReply, MalformedResponse, StreamReader, read_completion

_RETRY_STATUSES = frozenset({408, 429})


async def _bounded(awaitable: Any, timeout_s: float) -> Any:
    """`await awaitable` within `timeout_s`, else `TimeoutError`. `asyncio.timeout` where there is one (3.11+):
    before 3.12 `wait_for` wraps the awaitable in a task of its own, a task a request on the hot path."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(timeout_s):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout_s)


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again; `retry_after_s` is the server's own hint, if any."""

    def __init__(self, cause: str, retry_after_s: float | None = None) -> None:
        super().__init__(cause)
        self.retry_after_s = retry_after_s


class _Rejected(EngineError):
    """The server refused the request outright (a 4xx other than 408/429): retrying it would not help."""

    def __init__(self, message: str, status: int, words: str) -> None:
        super().__init__(message)
        self.status = status
        self.words = words


@dataclass
class _LoopState:
    clients: list[openai.AsyncOpenAI]  # one per server
    semaphore: asyncio.Semaphore


class OpenAIEngine(Engine):
    """Chat completions over HTTP with bounded concurrency, retries and streaming.

    `base_url` is the OpenAI-style base used as given, e.g. `http://127.0.0.1:8000/v1`, or several of them separated
    by commas (servers of the same model, see `openai_servers`). `options` are the fields of
    `OpenAIOptions` (timeouts, concurrency, retries, `extra_body`, API key, headers, image format), each checked
    with a message naming it. With no API key (neither `api_key` nor the `api_key_env` variable), no Authorization
    header is sent: a local server.
    """

    streams = True

    #: the options `load_engine(spec, role, **options)` may pass (checked there, with the others' names)
    known_options = tuple(f.name for f in fields(OpenAIOptions))

    def __init__(self, model: str, *, base_url: str, role: Role, **options: Any) -> None:
        urls = [u.strip().rstrip("/") for u in base_url.split(",")] if isinstance(base_url, str) else [base_url]
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        self.options = OpenAIOptions.from_kwargs(options)
        self.model = model
        self.role = role
        self.base_url = urls[0]
        self.url = self.base_url + "/chat/completions" + (f" (+{len(urls) - 1} more)" if len(urls) > 1 else "")
        self._servers = ServerPool(urls, cooldown_s=self.options.server_cooldown_s)
        self.spec = f"openai:{model}@{base_url}"
        self.stream_usage = self.options.stream_usage  # turned off when a server rejects stream_options
        self._api_key = self.options.api_key or os.environ.get(self.options.api_key_env)
        # The server does the batching; many engine calls may overlap and the semaphore bounds the requests.
        self.max_batch_size = 1024
        self.max_concurrent_calls = 64
        self.batch_window_s = 0.0  # a request waiting for others to batch with gains nothing here
        # A client's connections and an asyncio semaphore belong to one event loop, so both are kept per loop.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        #: the loops of blocking `generate` calls, which close their pools themselves when done
        self._blocking_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._aiohttp = self.options.http_transport != "httpx" and aiohttp_available()

    # -- public API -------------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        """Blocking batch call; safe to use from a thread that is already running an event loop."""

        async def once() -> list[Completion | Exception]:
            self._blocking_loops.add(asyncio.get_running_loop())
            try:
                return await self.agenerate(requests, gen)
            finally:
                await self.aclose()  # this loop ends here, and its connections with it

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(once())
        # asyncio.run refuses to nest, so run a fresh loop in a worker thread and block on it.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-engine") as pool:
            return pool.submit(lambda: asyncio.run(once())).result()

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        """Send every request concurrently (at most `max_concurrency` in flight on this loop), in input order."""
        if not requests:
            return []
        state = self._state()
        return list(await asyncio.gather(*(self._one(state, request, gen) for request in requests)))

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        """Stream one request: answer text pieces as the server sends them, then the `Completion` (thinking in
        `meta["reasoning_content"]`, never among the pieces). Opening the stream is retried like any request;
        once text has arrived a failure is final and raises `EngineError`, as does a stream cut off early."""
        params = self._params(request, gen)
        params["stream"] = True
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        state = self._state()
        started = time.perf_counter()
        try:
            stream, attempts, opened_at = await self._open_stream(state, params)
        except _Rejected as exc:
            if "stream_options" not in params or "stream_options" not in exc.words:
                raise
            # An older server that does not know stream_options: stream without token counts from now on.
            self.stream_usage = False
            del params["stream_options"]
            stream, more, opened_at = await self._open_stream(state, params)
            attempts = 1 + more
        deadline = opened_at + self.options.timeout_s  # the bound covers the whole attempt: opening and reading
        reader = StreamReader()
        first_piece_s: float | None = None
        try:
            chunks = stream.__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), max(deadline - time.perf_counter(), 0.0))
                except StopAsyncIteration:
                    break
                piece = reader.feed(_plain(chunk))
                if piece:
                    first_piece_s = first_piece_s or time.perf_counter() - started
                    yield piece
            reply = reader.result()
        except (asyncio.TimeoutError, openai.APITimeoutError) as exc:
            raise EngineError(
                f"{self.url}: stream timed out after {self.options.timeout_s:g}s{_so_far(reader)}"
            ) from exc
        except MalformedResponse as exc:
            raise EngineError(f"{self.url}: malformed stream: {exc}") from exc
        except openai.APIConnectionError as exc:
            raise EngineError(f"{self.url}: stream broke{_so_far(reader)}: {_connection_words(exc)}") from exc
        except openai.APIError as exc:  # an error event inside the stream
            raise EngineError(f"{self.url}: stream broke{_so_far(reader)}: {_api_error_words(exc)}") from None
        except httpx.TransportError as exc:  # older clients let a connection dropped mid-body through unwrapped
            raise EngineError(f"{self.url}: stream broke{_so_far(reader)}: {_connection_words(exc)}") from exc
        except Exception as exc:  # e.g. a chunk that is not JSON
            raise EngineError(f"{self.url}: stream broke{_so_far(reader)}: {type(exc).__name__}: {exc}") from exc
        finally:
            try:
                await stream.close()
            finally:
                state.semaphore.release()
        elapsed = time.perf_counter() - started
        meta = {"attempts": attempts, "elapsed_s": elapsed, "streamed": True, "usage_reported": reader.saw_usage}
        if first_piece_s is not None:
            meta["first_piece_s"] = first_piece_s
        yield self._completion(reply, elapsed, meta)

    async def aclose(self) -> None:
        """Close this event loop's client (its connection pool)."""
        with self._lock:
            state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            for client in state.clients:
                await client.close()

    def close(self) -> None:
        """Forget every loop's client; clients of loops still running are closed on their loop."""
        with self._lock:
            states = list(self._states.items())
            self._states.clear()
        for loop, state in states:
            if loop.is_running() and not loop.is_closed():
                for client in state.clients:
                    asyncio.run_coroutine_threadsafe(client.close(), loop)

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.spec!r}, role={self.role!r})"

    # -- internals --------------------------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                # Loops that ended without `aclose` (an `asyncio.run` per call) are forgotten here, not kept alive.
                for old in [old for old in self._states if old.is_closed()]:
                    del self._states[old]
                aiohttp = self._aiohttp and (
                    self.options.http_transport == "aiohttp" or loop in self._blocking_loops or is_batcher_loop(loop)
                )
                clients = [self._client(url, aiohttp) for url in self._servers.urls]
                if aiohttp:  # a micro-batcher's loop closes the pool when it stops (the others: aclose)
                    at_loop_end(loop, partial(_close_all, clients))
                state = self._states[loop] = _LoopState(clients, asyncio.Semaphore(self.options.max_concurrency))
            return state

    def _client(self, base_url: str, aiohttp: bool) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            # the SDK's aiohttp transport when asked (see OpenAIOptions.http_transport), else its httpx default
            http_client=openai.DefaultAioHttpClient() if aiohttp else None,
            # The client insists on a key; without one the Authorization header is dropped per request (_params).
            api_key=self._api_key or "no-key",
            base_url=base_url,
            timeout=openai.Timeout(
                self.options.timeout_s, connect=min(self.options.connect_timeout_s, self.options.timeout_s)
            ),
            max_retries=0,  # retries are ours (see the module docstring)
            default_headers=self.options.default_headers or None,
        )

    def _params(self, request: ChatRequest, gen: GenerationConfig) -> dict[str, Any]:
        try:
            messages = openai_messages(request, image_format=self.options.image_format)  # type: ignore[arg-type]
        except Exception as exc:  # e.g. an image PIL cannot encode: this request's failure only
            raise EngineError(f"could not build the request: {type(exc).__name__}: {exc}") from exc
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "max_tokens": gen.max_new_tokens,
        }
        if gen.seed is not None:
            params["seed"] = gen.seed
        # vLLM fills a field a request leaves out from the checkpoint's generation_config.json (chat_completion/
        # protocol.py `to_sampling_params`: user, then server default, then OpenAI's), so every field goes out
        extended = {"top_k": gen.top_k, "min_p": gen.min_p, "repetition_penalty": gen.repetition_penalty}
        body = {**(extended if self.options.sampling_fields == "extended" else {}), **self.options.extra_body}
        if body:
            params["extra_body"] = body
        if not self._api_key and not any(k.lower() == "authorization" for k in self.options.default_headers):
            params["extra_headers"] = {"Authorization": openai.Omit()}
        return params

    async def _one(self, state: _LoopState, request: ChatRequest, gen: GenerationConfig) -> Completion | Exception:
        try:
            return await self._complete(state, request, gen)
        except EngineError as exc:
            return exc
        except Exception as exc:  # a surprise in one reply must fail its own sample, never the batch
            return EngineError.caused_by(f"{self.url}: {type(exc).__name__}: {exc}", exc)

    async def _complete(self, state: _LoopState, request: ChatRequest, gen: GenerationConfig) -> Completion:
        params = self._params(request, gen)
        started = time.perf_counter()
        retrying = self._retrying()
        try:
            async for attempt in retrying:
                with attempt:
                    async with state.semaphore:
                        t0 = time.perf_counter()
                        body = await self._attempt(state, params)
                        latency = time.perf_counter() - t0
        except _Retryable as exc:
            raise EngineError(f"{self.url}: {exc}; gave up after {self.options.max_retries + 1} attempt(s)") from None
        try:
            data = json.loads(body)
        except ValueError:
            # masked before it is cut: a cut could leave a piece of an echoed image too short to recognise
            raise EngineError(f"{self.url}: malformed response (not JSON): {redact(body, 300)!r}") from None
        try:
            reply = read_completion(data)
        except MalformedResponse as exc:
            raise EngineError(f"{self.url}: malformed response: {exc}") from None
        meta = {"attempts": retrying.statistics["attempt_number"], "elapsed_s": time.perf_counter() - started}
        return self._completion(reply, latency, meta)

    async def _attempt(self, state: _LoopState, params: dict[str, Any]) -> str:
        """One request to the server the pool picks, bounded in wall-clock time; returns the response body as text."""
        body, options = _raw_request(params)
        server = self._servers.acquire()
        try:
            # the bound covers the whole attempt; the client's own timeout is per read
            return await _bounded(
                state.clients[server].post("/chat/completions", cast_to=str, body=body, options=options),
                self.options.timeout_s,
            )
        except Exception as exc:
            raise self._failure(exc, server) from (None if isinstance(exc, openai.APIStatusError) else exc)
        finally:
            self._servers.release(server)

    async def _open_stream(self, state: _LoopState, params: dict[str, Any]) -> tuple[Any, int, float]:
        """Open a stream (with retries); return it, the number of attempts and when the last one began. On success
        the caller owns one slot of the semaphore and must release it."""
        retrying = self._retrying()
        try:
            async for attempt in retrying:
                with attempt:
                    await state.semaphore.acquire()
                    opened_at = time.perf_counter()
                    # a stream counts as outstanding on its server while it opens (its reading is bounded apart)
                    server = self._servers.acquire()
                    try:
                        stream = await asyncio.wait_for(
                            state.clients[server].chat.completions.create(**params), self.options.timeout_s
                        )
                    except BaseException as exc:
                        state.semaphore.release()
                        if not isinstance(exc, Exception):
                            raise
                        raise self._failure(exc, server) from (None if isinstance(exc, openai.APIStatusError) else exc)
                    finally:
                        self._servers.release(server)
        except _Retryable as exc:
            raise EngineError(f"{self.url}: {exc}; gave up after {self.options.max_retries + 1} attempt(s)") from None
        return stream, retrying.statistics["attempt_number"], opened_at

    def _failure(self, exc: Exception, server: int | None = None) -> Exception:
        """Sort a failed attempt into retryable (`_Retryable`) or final (`EngineError`). A server that could not be
        reached is taken out of the pool, and with another one live the retry goes at once."""
        if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)) and _timed_out(exc):
            return _Retryable(f"timed out after {self.options.timeout_s:g}s")
        if isinstance(exc, openai.APIConnectionError) and server is not None and len(self._servers.urls) > 1:
            words = _connection_words(exc)
            others = self._servers.take_out(server, words)
            return _Retryable(f"{self._servers.urls[server]}: {words}", 0.0 if others else None)
        if isinstance(exc, openai.APIStatusError):
            status, words = exc.status_code, _api_error_words(exc)
            if status in _RETRY_STATUSES or status >= 500:
                return _Retryable(f"HTTP {status}: {words}", _retry_after(exc.response.headers))
            return _Rejected(f"{self.url}: HTTP {status}: {words} (not retried)", status, words)
        if isinstance(exc, openai.APIConnectionError):
            return _Retryable(_connection_words(exc))
        if isinstance(exc, EngineError):
            return exc
        return EngineError.caused_by(f"{self.url}: {type(exc).__name__}: {exc}", exc)

    def _retrying(self) -> AsyncRetrying:
        backoff = wait_exponential_jitter(
            initial=self.options.backoff_s, max=self.options.max_backoff_s, jitter=self.options.backoff_s
        )

        def wait(state: RetryCallState) -> float:
            # The server's hint wins (capped); otherwise our own backoff, whose jitter spreads the retries of many
            # requests that failed together so they do not all return at once.
            error = state.outcome.exception() if state.outcome is not None else None
            hint = error.retry_after_s if isinstance(error, _Retryable) else None
            return min(hint, self.options.max_retry_after_s) if hint is not None else backoff(state)

        return AsyncRetrying(
            stop=stop_after_attempt(self.options.max_retries + 1),
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )

    def _completion(self, reply: ChatReply, latency: float, meta: dict[str, Any]) -> Completion:
        if not reply.text and reply.refusal:
            raise EngineError(f"{self.url}: the model refused: {reply.refusal}")
        meta["model"] = reply.model or self.model
        if reply.reasoning:
            meta["reasoning_content"] = reply.reasoning
        if reply.refusal:
            meta["refusal"] = reply.refusal
        return Completion(
            text=reply.text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            latency_s=latency,
            meta=meta,
            finish_reason=reply.finish_reason,
        )


async def _close_all(clients: Sequence[openai.AsyncOpenAI]) -> None:
    for client in clients:
        await client.close()


def _raw_request(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`create`'s keyword arguments as the JSON body and request options `post` takes: what `create` would send."""
    body = {k: v for k, v in params.items() if k not in ("extra_body", "extra_headers")}
    body.update(params.get("extra_body") or {})
    options = {"headers": params["extra_headers"]} if "extra_headers" in params else {}
    return body, options


def _plain(chunk: object) -> object:
    """A stream chunk as plain JSON data: the client builds its models without validation, so a malformed chunk
    arrives as a model holding whatever the server sent, which the reader then checks."""
    return chunk.to_dict(warnings=False) if isinstance(chunk, openai.BaseModel) else chunk


def _so_far(reader: StreamReader) -> str:
    return f" after {len(''.join(reader.text))} characters" if reader.chunks else " before any text"


def _connection_words(exc: Exception) -> str:
    cause = _aiohttp_cause(exc) or exc.__cause__ or exc  # the client's own message is just "Connection error."
    return f"connection error: {type(cause).__name__}: {cause}"


def _aiohttp_cause(exc: BaseException) -> BaseException | None:
    """The aiohttp error under a failure the SDK's aiohttp transport passed on, if any: the transport maps every
    connection error but one (refused, reset, server gone) to httpx's ConnectTimeout, so the cause tells."""
    cause = exc.__cause__
    for _ in range(8):
        if cause is None:
            return None
        if type(cause).__module__.partition(".")[0] == "aiohttp":
            return cause
        cause = cause.__cause__
    return None


def _timed_out(exc: BaseException) -> bool:
    """Whether a timeout error is one (not a connection error the aiohttp transport reported as a timeout)."""
    cause = _aiohttp_cause(exc)
    return cause is None or isinstance(cause, TimeoutError)


def _api_error_words(exc: openai.APIError) -> str:
    """The server's own words: OpenAI-style `{"error": {"message"}}`, FastAPI's `detail`, or the raw text; masked
    and cut (`redact`), since servers echo requests and headers back in their errors."""
    response = getattr(exc, "response", None)
    try:
        data = response.json() if response is not None else exc.body
    except ValueError:
        return redact(response.text or response.reason_phrase or exc.message, 400)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return redact(error["message"], 400)
        for key in ("message", "detail", "error"):
            if data.get(key):
                return redact(data[key], 400)
    return redact(data if data is not None else exc.message, 400)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from Retry-After-Ms, or Retry-After (delta-seconds or an HTTP date); None if absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name) or "nan") * scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    value = headers.get("retry-after")
    try:
        when = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0) if when is not None else None
