"""Every engine call as a GenAI client span: `InstrumentedEngine` wraps an engine (the micro-batcher applies it per
call once tracing is on), so no backend knows about tracing.

A span is named `chat <model>` and carries the conventions' operation, provider, request model, sampling settings,
token usage and finish reasons (one per request of the batch), plus ours (spec, batch size, images, failures).
A failed request adds an `exception` event (type, message, stack) and `error.type`. The span's parent is the span of
the graph node that sent the first request of the batch (the batcher hands over where each request came from);
the other senders of a batched call are linked. Token usage and call duration also go to the conventions' metrics
`gen_ai.client.token.usage` and `gen_ai.client.operation.duration`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from functools import lru_cache
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from rapid_agent.backends import ChatRequest, Completion, Engine, GenerationConfig, batching
from rapid_agent.backends.base import redact
from rapid_agent.telemetry import attributes as A
from rapid_agent.telemetry.callbacks import current_span

TRACER_NAME = "rapid_agent"
#: a proxy until a tracer provider is installed; it follows the global one from then on
_tracer = trace.get_tracer(TRACER_NAME)


@lru_cache(maxsize=1)
def _instruments() -> tuple[Any, Any]:
    meter = metrics.get_meter(TRACER_NAME)
    return (
        gen_ai_metrics.create_gen_ai_client_token_usage(meter),
        gen_ai_metrics.create_gen_ai_client_operation_duration(meter),
    )


def _parent_and_links() -> tuple[Any, list[Link]]:
    """The context to open the engine span in, and links to the other runs that share the call."""
    origins = batching.call_origins.get()
    spans = [ctx.run(current_span) for ctx in origins] if origins else [current_span()]
    unique: dict[int, Any] = {}
    for span in spans:
        if span is not None:
            unique.setdefault(span.get_span_context().span_id, span)
    found = list(unique.values())
    if not found:
        return None, []
    return trace.set_span_in_context(found[0]), [Link(s.get_span_context()) for s in found[1:]]


def _input_messages(request: ChatRequest) -> str:
    parts: list[dict] = []
    for image in request.images:  # never the pixels: size and hash only
        width, height, digest = A.image_digest(image)
        parts.append({"type": "image", "width": width, "height": height, "sha256": digest})
    parts.append({"type": "text", "content": request.prompt})
    return json.dumps([{"role": "user", "parts": parts}])


def _output_messages(completion: Completion) -> str:
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": completion.text}],
        "finish_reason": completion.finish_reason or "",
    }
    return json.dumps([message])


class InstrumentedEngine(Engine):
    """Wraps an engine so that each call is a span; results pass through untouched."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.max_batch_size = inner.max_batch_size
        self.max_concurrent_calls = inner.max_concurrent_calls
        self.streams = inner.streams

    def _start(self, gen: GenerationConfig, batch_size: int, images: int, stream: bool) -> Any:
        base = A.spec_attributes(self.spec)
        attributes = {
            A.OPERATION_NAME: A.CHAT,
            **base,
            A.REQUEST_TEMPERATURE: gen.temperature,
            A.REQUEST_TOP_P: gen.top_p,
            A.REQUEST_MAX_TOKENS: gen.max_new_tokens,
            A.ENGINE_BATCH_SIZE: batch_size,
            A.ENGINE_IMAGES: images,
        }
        if gen.seed is not None:
            attributes[A.REQUEST_SEED] = gen.seed
        if stream:
            attributes[A.REQUEST_STREAM] = True
        model = str(base[A.REQUEST_MODEL])
        short = model.rstrip("/").rsplit("/", 1)[-1] if model.startswith(("/", "~", ".")) else model
        kind = SpanKind.CLIENT if A.SERVER_ADDRESS in base else SpanKind.INTERNAL
        context, links = _parent_and_links()
        span = _tracer.start_span(f"{A.CHAT} {short}", context=context, kind=kind, attributes=attributes, links=links)
        return span, base

    def _finish(
        self, span: Any, base: dict, requests: Sequence[ChatRequest], results: Sequence[Any], started: float
    ) -> None:
        done = [r for r in results if isinstance(r, Completion)]
        failed = [r for r in results if isinstance(r, BaseException)]
        span.set_attributes(
            {
                A.USAGE_INPUT_TOKENS: sum(c.prompt_tokens for c in done),
                A.USAGE_OUTPUT_TOKENS: sum(c.completion_tokens for c in done),
                A.RESPONSE_FINISH_REASONS: [
                    (r.finish_reason or "unknown") if isinstance(r, Completion) else "error" for r in results
                ],
                A.ENGINE_FAILURES: len(failed),
            }
        )
        if A.capture_content():
            self._record_content(span, requests, results)
        for exc in failed:
            A.record_exception(span, exc)
        if failed:
            span.set_attribute(A.ERROR_TYPE, type(failed[0]).__qualname__)
            span.set_status(
                Status(
                    StatusCode.ERROR,
                    f"{len(failed)} of {len(results)} request(s) failed: {redact(failed[0], limit=300)}",
                )
            )
        self._record_metrics(base, done, failed, started)

    @staticmethod
    def _record_content(span: Any, requests: Sequence[ChatRequest], results: Sequence[Any]) -> None:
        """Prompt and completion text (opt-in): on the span for one request, as one event per request for a batch."""
        for i, (request, result) in enumerate(zip(requests, results)):
            content = {A.INPUT_MESSAGES: _input_messages(request)}
            if request.system:
                content[A.SYSTEM_INSTRUCTIONS] = json.dumps([{"type": "text", "content": request.system}])
            if isinstance(result, Completion):
                content[A.OUTPUT_MESSAGES] = _output_messages(result)
            if len(requests) == 1:
                span.set_attributes(content)
            else:
                span.add_event("rapid.request", {"rapid.request.index": i, **content})

    @staticmethod
    def _record_metrics(base: dict, done: list[Completion], failed: list[BaseException], started: float) -> None:
        tokens, duration = _instruments()
        common = {
            A.OPERATION_NAME: A.CHAT,
            A.PROVIDER_NAME: base[A.PROVIDER_NAME],
            A.REQUEST_MODEL: base[A.REQUEST_MODEL],
        }
        for c in done:
            tokens.record(c.prompt_tokens, {**common, A.TOKEN_TYPE: A.TOKEN_INPUT})
            tokens.record(c.completion_tokens, {**common, A.TOKEN_TYPE: A.TOKEN_OUTPUT})
        error = {A.ERROR_TYPE: type(failed[0]).__qualname__} if failed else {}
        duration.record(time.perf_counter() - started, {**common, **error})

    async def agenerate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        span, base = self._start(gen, len(requests), sum(len(r.images) for r in requests), stream=False)
        started = time.perf_counter()
        try:
            results = await self.inner.agenerate(requests, gen)
        except BaseException as exc:
            self._finish(span, base, requests, [exc] * len(requests), started)
            span.end()
            raise
        self._finish(span, base, requests, results, started)
        span.end()
        return results

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        span, base = self._start(gen, 1, len(request.images), stream=True)
        started = time.perf_counter()
        first = True
        result: Any = None
        try:
            async for piece in self.inner.astream(request, gen):
                if first:
                    span.set_attribute(A.RESPONSE_TIME_TO_FIRST_CHUNK, time.perf_counter() - started)
                    first = False
                if isinstance(piece, Completion):
                    result = piece
                yield piece
        except GeneratorExit:  # the caller stopped reading: not a failure of the engine
            raise
        except BaseException as exc:
            result = exc
            raise
        finally:
            if result is not None:
                self._finish(span, base, [request], [result], started)
            span.end()

    def close(self) -> None:
        self.inner.close()
