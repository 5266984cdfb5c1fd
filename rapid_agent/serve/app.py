"""The FastAPI app: OpenAI's chat-completions and models endpoints in front of RAPID pipelines, plus health and
Prometheus metrics. Handlers are thin: check, admit, turn the request into a sample, run the pipeline (the compiled
graph), turn the state into the protocol's response.

    app = create_app({"rapid": RapidContext(captioner=..., reasoner=...)}, ServeConfig(max_queue=64))

Every failure answers in OpenAI's error shape: 400 bad input (naming the field), 401 key, 404 model, 413 body or
image too large, 429 queue full (with Retry-After), 502 an engine failed, 503 shutting down, 504 past the request
timeout; anything unexpected (a ValueError or TypeError included: the request was validated before the graph ran,
so one is the server's bug, not the client's fault) is a bare 500 whose details go to the server log, redacted,
never to the client. A streamed request is admitted, validated and perceived before the first byte, so those
failures answer with their status as a plain request's would; only the answering model's failure comes as an error
event, once the stream has begun.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from rapid_agent.backends.base import redact
from rapid_agent.config import RapidContext
from rapid_agent.serve.auth import KeyChecker
from rapid_agent.serve.config import ServeConfig, check_model_name
from rapid_agent.serve.errors import APIError, bad_request
from rapid_agent.serve.inputs import sample_from_request
from rapid_agent.serve.limits import BodySizeLimit, Draining, Gate, QueueFull
from rapid_agent.serve.metrics import CONTENT_TYPE, Metrics
from rapid_agent.serve.pipeline import Pipeline
from rapid_agent.serve.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    RapidResult,
    Usage,
    completion_id,
)

logger = logging.getLogger("rapid_agent.serve")

#: how much of an unexpected error's traceback goes to the log
_MAX_LOGGED_CHARS = 20_000
#: metrics label for requests that name no served model (client strings never become label values)
UNKNOWN_MODEL = "-"


@dataclass
class ServerState:
    config: ServeConfig
    pipelines: dict[str, Pipeline]
    gate: Gate
    keys: KeyChecker
    metrics: Metrics
    started: int

    def pipeline(self, name: str) -> Pipeline:
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise APIError(
                404,
                f"model {name!r} does not exist on this server; served models: {sorted(self.pipelines)}",
                param="model",
                code="model_not_found",
            )
        return pipeline

    def label(self, name: str | None) -> str:
        return name if name in self.pipelines else UNKNOWN_MODEL


def create_app(
    pipelines: Mapping[str, RapidContext | Pipeline],
    config: ServeConfig | None = None,
    *,
    api_keys: tuple[str, ...] | list[str] = (),
    run_config: Mapping[str, Any] | None = None,
) -> FastAPI:
    """An app serving each pipeline under its name. Engines are loaded here, so a bad spec fails before serving.
    `run_config` is LangGraph's config for every graph run (e.g. tracing callbacks)."""
    config = config or ServeConfig()
    if not pipelines:
        raise ValueError("no pipelines to serve")
    built = {
        check_model_name(name): p if isinstance(p, Pipeline) else Pipeline(name, p, run_config=run_config)
        for name, p in pipelines.items()
    }
    gate = Gate(config.max_active, config.max_queue)
    state = ServerState(config, built, gate, KeyChecker(api_keys), Metrics(gate, built.values()), int(time.time()))
    app = FastAPI(title="rapid-agent", summary="RAPID behind the OpenAI chat-completions API")
    app.state.serve = state
    # the last added runs first: auth before anything reads the body
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_body_bytes,
        on_reject=lambda: state.metrics.requests.labels(UNKNOWN_MODEL, "413").inc(),
    )
    app.add_middleware(ApiKeyAuth, state=state)
    _add_error_handlers(app, state)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = {
            "status": "draining" if gate.draining else "ok",
            "models": sorted(built),
            "active": gate.active,
            "queued": gate.waiting,
        }
        return JSONResponse(body, status_code=503 if gate.draining else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(
            data=[ModelCard(id=name, created=state.started, rapid=p.describe()) for name, p in built.items()]
        )

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> Response:
        label = state.label(body.model)
        try:
            pipeline = state.pipeline(body.model)
            response = await (_open_stream if body.stream else _complete)(state, pipeline, body)
        except APIError as exc:
            state.metrics.requests.labels(label, str(exc.status)).inc()
            raise
        state.metrics.requests.labels(label, "200").inc()
        return response

    return app


async def _complete(state: ServerState, pipeline: Pipeline, body: ChatCompletionRequest) -> JSONResponse:
    started = time.monotonic()

    async def run() -> dict:
        await state.gate.enter()
        try:
            sample = await sample_from_request(body, pipeline.context, state.config, pipeline=pipeline.name)
            return await pipeline.answer(sample, pipeline.context_for(body))
        finally:
            state.gate.leave(time.monotonic() - started)

    try:
        final = await asyncio.wait_for(run(), state.config.request_timeout_s)
    except Exception as exc:
        raise _as_api_error(exc, state) from None
    _check_errors(final)
    text = pipeline.answer_text(final)
    response = ChatCompletion(
        model=pipeline.name,
        choices=[Choice(message=AssistantMessage(content=text), finish_reason=_finish_reason(final))],
        usage=_usage(final),
        rapid=_rapid(final),
    )
    state.metrics.latency.labels(pipeline.name).observe(time.monotonic() - started)
    return JSONResponse(response.model_dump(), headers={"X-Request-Id": response.id})


async def _open_stream(state: ServerState, pipeline: Pipeline, body: ChatCompletionRequest) -> Response:
    """Admit, validate and perceive before the first byte (so those failures answer with their status, as a plain
    request's would), then stream the answering model's pieces."""
    started = time.monotonic()
    deadline = started + state.config.request_timeout_s
    try:
        await asyncio.wait_for(state.gate.enter(), state.config.request_timeout_s)
    except Exception as exc:
        raise _as_api_error(exc, state) from None

    async def prepare() -> tuple[RapidContext, dict, dict | None]:
        context = pipeline.context_for(body)
        sample = await sample_from_request(body, pipeline.context, state.config, pipeline=pipeline.name)
        if not pipeline.perceives:
            return context, sample, None
        perceived = await pipeline.perceive(sample, context)
        _check_errors(perceived)
        return context, sample, perceived

    try:
        context, sample, perceived = await asyncio.wait_for(prepare(), max(deadline - time.monotonic(), 0.001))
    except Exception as exc:
        state.gate.leave()
        raise _as_api_error(exc, state) from None
    except BaseException:  # cancelled: the slot is free again, the cancellation goes on
        state.gate.leave()
        raise

    def finished() -> None:
        latency = time.monotonic() - started
        state.gate.leave(latency)
        state.metrics.latency.labels(pipeline.name).observe(latency)

    events = _events(state, pipeline, body, pipeline.stream(sample, context, perceived), deadline)
    return _ReleasingStream(
        events,
        on_close=finished,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    state: ServerState,
    pipeline: Pipeline,
    body: ChatCompletionRequest,
    answer: AsyncIterator[str | dict],
    deadline: float,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format: the role, the answer's pieces (`answer`: text pieces, then the
    final state), a last chunk with the finish reason and RAPID's result (then usage, when asked), `[DONE]`. A
    failure after the first byte is an error event."""
    cid, created = completion_id(), int(time.time())

    def event(delta: Delta | None, finish: str | None = None, **extra: Any) -> str:
        choices = [ChunkChoice(delta=delta, finish_reason=finish)] if delta is not None else []
        chunk = ChatCompletionChunk(id=cid, created=created, model=pipeline.name, choices=choices, **extra)
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    # The pipeline runs in a task of its own that feeds a queue: the deadline then bounds each wait here without
    # driving the graph's generator from a different task at every step.
    queue: asyncio.Queue = asyncio.Queue()

    async def produce() -> None:
        try:
            async for item in answer:
                await queue.put(item)
            await queue.put(None)
        except Exception as exc:
            await queue.put(exc)

    if pipeline.streams:
        state.metrics.streamed.labels(pipeline.name).inc()
    producer = asyncio.get_running_loop().create_task(produce())
    yield event(Delta(role="assistant", content=""))
    try:
        final: dict = {}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError()
            item = await asyncio.wait_for(queue.get(), remaining)
            if item is None:
                break
            if isinstance(item, Exception):
                raise item
            if isinstance(item, str):
                yield event(Delta(content=item))
            else:
                final = item
        _check_errors(final)
        yield event(Delta(), _finish_reason(final), rapid=_rapid(final))
        if body.stream_options is not None and body.stream_options.include_usage:
            yield event(None, usage=_usage(final))
    except Exception as exc:
        error = _as_api_error(exc, state)
        state.metrics.stream_errors.labels(pipeline.name).inc()
        yield f"data: {json.dumps(error.body().model_dump())}\n\n"
    finally:
        producer.cancel()
    yield "data: [DONE]\n\n"


class _ReleasingStream(StreamingResponse):
    """A streaming response that calls `on_close` once it is over, however it ends (finished, client gone,
    cancelled), even when its body iterator never started."""

    def __init__(self, content: AsyncIterator[str], *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _as_api_error(exc: BaseException, state: ServerState) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFull):
        return APIError(429, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, Draining):
        return APIError(503, "the server is shutting down", code="shutting_down", headers={"Connection": "close"})
    if isinstance(exc, asyncio.TimeoutError):
        timeout = state.config.request_timeout_s
        return APIError(504, f"the request took longer than the server's limit of {timeout:g}s", code="timeout")
    # Anything else is the server's fault, a ValueError included: requests are validated (the protocol models, the
    # sample, the fields checked by hand) before the graph runs, and those checks raise APIError naming the field.
    logger.error("internal error: %s", redact("".join(traceback.format_exception(exc)), limit=_MAX_LOGGED_CHARS))
    return APIError(500, "internal server error; the server log has the details", code="internal_error")


def _check_errors(final: Mapping[str, Any]) -> None:
    errors = final.get("errors") or []
    if errors:
        raise APIError(502, "; ".join(errors), code="engine_error")


def _finish_reason(final: Mapping[str, Any]) -> str:
    return final.get("reasoner_finish_reason") or "stop"


def _usage(final: Mapping[str, Any]) -> Usage:
    metrics = final.get("metrics") or {}
    prompt = sum(int(metrics.get(f"{role}_prompt_tokens") or 0) for role in ("captioner", "reasoner"))
    completion = sum(int(metrics.get(f"{role}_completion_tokens") or 0) for role in ("captioner", "reasoner"))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _rapid(final: Mapping[str, Any]) -> RapidResult:
    prediction = final.get("prediction")  # the graph reads the answer, with or without a gold one
    return RapidResult(
        mode=final.get("mode"),
        engines=final.get("engines") or {},
        captioner_output=final.get("captioner_output"),
        caption=final.get("caption"),
        solution=final.get("solution"),
        perception_missing=final.get("perception_missing") or [],
        prediction=prediction,
        correct=final.get("correct"),
        verdict=final.get("verdict"),
        metrics={k: float(v) for k, v in (final.get("metrics") or {}).items() if v is not None},
    )


# -- auth and error handling -----------------------------------------------------------------------------------------


class ApiKeyAuth:
    """ASGI middleware: with keys configured, every /v1/ request needs `Authorization: Bearer <key>` (checked before
    the body is read). /health and /metrics stay open for probes and scrapers."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/") and self.state.keys.enabled:
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if not self.state.keys.check(header):
                self.state.metrics.requests.labels(UNKNOWN_MODEL, "401").inc()
                error = APIError(
                    401, "invalid or missing API key (send 'Authorization: Bearer <key>')", code="invalid_api_key"
                )
                await _error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), status_code=error.status, headers=error.headers)


_TYPE_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}


def _param(loc: tuple) -> str | None:
    """A pydantic error location as the request field it names, `messages[0].content[1].image_url.url`: union
    member names (`str`, `list[...]`) dropped, a discriminator tag that repeats its field name said once."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == "body" and not parts:
            continue
        elif item in _TYPE_NAMES or "[" in item or "-" in item:
            continue
        elif not parts or parts[-1] != "." + item:
            parts.append("." + item)
    return "".join(parts).lstrip(".") or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """The most specific problem (the deepest location: in a union, the member that came closest), as
    `field: message`; never the offending input, which may be megabytes of image."""
    errors = exc.errors() or [{"loc": (), "msg": "invalid request"}]
    if any(e.get("type") == "json_invalid" for e in errors):
        return "the request body is not valid JSON", None
    error = max(errors, key=lambda e: len(e.get("loc", ())))
    param = _param(tuple(error.get("loc", ())))
    if error.get("type") == "missing" and param is None:
        return "the request needs a JSON body", None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def _add_error_handlers(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        state.metrics.requests.labels(UNKNOWN_MODEL, "400").inc()
        return _error_response(bad_request(message, param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413:
            state.metrics.requests.labels(UNKNOWN_MODEL, "413").inc()
        return _error_response(APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(_as_api_error(exc, state))
