"""An engine for any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp, OpenAI itself).

The server batches, so this client only bounds how many requests are in flight and retries what is worth
retrying: connection failures, timeouts, 408, 429 (honouring `Retry-After`) and 5xx, with exponential backoff and
jitter. A request that still fails, or that the server rejects outright (other 4xx), becomes an `EngineError` entry
in the result list; the rest of the batch is unaffected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import httpx

from rapid_agent.backends.base import ChatRequest, Completion, Engine, EngineError, GenerationConfig, Role
from rapid_agent.backends.images import ImageFormat, openai_messages

_RETRY_STATUSES = frozenset({408, 429})


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again; `wait_s` is the server's own hint, if it gave one."""

    def __init__(self, cause: str, wait_s: float | None = None) -> None:
        super().__init__(cause)
        self.wait_s = wait_s


class OpenAIEngine(Engine):
    """Chat completions over HTTP with bounded concurrency and retries.

    `base_url` is the OpenAI-style base used as given, e.g. `http://127.0.0.1:8000/v1`; requests go to
    `{base_url}/chat/completions`. The API key comes from `api_key` or the `api_key_env` variable; none is fine for a
    local server. `extra_body` is merged into every request body (e.g. `{"top_k": 20}` for vLLM).
    """

    # Longest we sleep on a server's Retry-After, and on our own backoff: a hint of an hour must not hang a batch.
    max_retry_after_s: float = 30.0
    max_backoff_s: float = 30.0

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        role: Role,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        extra_body: dict | None = None,
        image_format: ImageFormat = "PNG",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries!r}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s!r}")
        self.model = model
        self.role = role
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.spec = f"openai:{model}@{base_url}"
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self.image_format = image_format
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        # The server does the batching; many engine calls may overlap and the semaphore bounds the requests.
        self.max_batch_size = 1024
        self.max_concurrent_calls = 64
        # asyncio primitives belong to one event loop, so the in-flight bound is kept per loop.
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    # -- public API -------------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        """Blocking batch call; safe to use from a thread that is already running an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, gen))
        # asyncio.run refuses to nest, so run a fresh loop in a worker thread and block on it.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-engine") as pool:
            return pool.submit(lambda: asyncio.run(self.agenerate(requests, gen))).result()

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        """Send every request concurrently (at most `max_concurrency` in flight on this loop), in input order."""
        if not requests:
            return []
        semaphore = self._semaphore()
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # One client per call: httpx clients are bound to the loop that opened their connections.
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=self.timeout_s, limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, semaphore, r, gen) for r in requests)))

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.spec!r}, role={self.role!r})"

    # -- internals --------------------------------------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            sem = self._semaphores.get(loop)
            if sem is None:
                sem = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
            return sem

    def _body(self, request: ChatRequest, gen: GenerationConfig) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(request, image_format=self.image_format),
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "max_tokens": gen.max_new_tokens,
        }
        if gen.seed is not None:
            body["seed"] = gen.seed
        body.update(self.extra_body)
        return body

    async def _one(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: ChatRequest, gen: GenerationConfig
    ) -> Completion | Exception:
        try:
            body = self._body(request, gen)
        except Exception as exc:  # e.g. an image PIL cannot encode: this request's failure only
            return EngineError.caused_by(f"could not build the request: {type(exc).__name__}: {exc}", exc)
        started = time.perf_counter()
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                async with semaphore:
                    t0 = time.perf_counter()
                    # wait_for bounds the whole attempt; httpx's own timeout is per read, so a trickle could
                    # otherwise outlive timeout_s.
                    response = await asyncio.wait_for(client.post(self.url, json=body), self.timeout_s)
                    latency = time.perf_counter() - t0
                return self._parse(response, latency, attempt, time.perf_counter() - started)
            except _Retryable as exc:
                cause, hint = str(exc), exc.wait_s
            except (httpx.TimeoutException, asyncio.TimeoutError):
                cause, hint = f"timed out after {self.timeout_s:g}s", None
            except httpx.TransportError as exc:
                cause, hint = f"connection error: {type(exc).__name__}: {exc}", None
            except EngineError as exc:
                return exc
            if attempt == attempts:
                break
            await asyncio.sleep(self._delay(attempt, hint))
        return EngineError(f"{self.url}: {cause}; gave up after {attempts} attempt(s)")

    def _delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(max(hint, 0.0), self.max_retry_after_s)
        # Jitter spreads the retries of many requests that failed together, so they do not all return at once.
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s) * random.uniform(0.5, 1.5)

    def _parse(self, response: httpx.Response, latency: float, attempt: int, elapsed: float) -> Completion:
        status = response.status_code
        if status in _RETRY_STATUSES or status >= 500:
            hint = _retry_after(response.headers.get("retry-after")) if status == 429 else None
            raise _Retryable(f"HTTP {status}: {_error_message(response)}", hint)
        if status >= 400:
            raise EngineError(f"{self.url}: HTTP {status}: {_error_message(response)} (not retried)")
        try:
            data = response.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise EngineError(
                f"{self.url}: malformed response ({type(exc).__name__}): {response.text[:300]!r}"
            ) from exc
        usage = data.get("usage") or {}
        meta: dict[str, Any] = {"attempts": attempt, "elapsed_s": elapsed, "model": data.get("model", self.model)}
        finish = data["choices"][0].get("finish_reason")
        if finish is not None:
            meta["finish_reason"] = finish
        # Reasoning servers (vLLM's reasoning parsers, DeepSeek) return the thinking apart from the answer.
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            meta["reasoning_content"] = reasoning
        return Completion(
            text=message.get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=latency,
            meta=meta,
        )


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI-style `{"error": {"message"}}`, FastAPI's `detail`, or the raw text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for key in ("message", "detail", "error"):
            if data.get(key):
                return str(data[key])[:500]
    return str(data)[:500]


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
