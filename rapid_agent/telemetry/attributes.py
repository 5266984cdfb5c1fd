"""The names spans and metrics carry: OpenTelemetry's GenAI semantic conventions (imported from the
`opentelemetry-semantic-conventions` package, never typed by hand) for every model call, and `rapid.*` for what only
this pipeline knows (perception mode, parsed answer, correctness, the image's size and hash).

Privacy follows the conventions: prompt and completion text (and the question) are recorded only when the user opts
in, with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` or `setup_tracing(capture_content=True)`. Image
bytes are never recorded, only their size and a SHA-256; engine specs, error texts and tool-call arguments pass
through `redact`, so neither a key pasted into a spec nor an image a server echoes in its error reaches a trace.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, exception_attributes, server_attributes

from rapid_agent.backends.base import redact

# -- GenAI semantic conventions ---------------------------------------------------------------------------------
OPERATION_NAME = gen_ai.GEN_AI_OPERATION_NAME
PROVIDER_NAME = gen_ai.GEN_AI_PROVIDER_NAME
REQUEST_MODEL = gen_ai.GEN_AI_REQUEST_MODEL
REQUEST_TEMPERATURE = gen_ai.GEN_AI_REQUEST_TEMPERATURE
REQUEST_TOP_P = gen_ai.GEN_AI_REQUEST_TOP_P
REQUEST_MAX_TOKENS = gen_ai.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_SEED = gen_ai.GEN_AI_REQUEST_SEED
REQUEST_STREAM = gen_ai.GEN_AI_REQUEST_STREAM
USAGE_INPUT_TOKENS = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
RESPONSE_FINISH_REASONS = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
RESPONSE_TIME_TO_FIRST_CHUNK = gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
INPUT_MESSAGES = gen_ai.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES = gen_ai.GEN_AI_OUTPUT_MESSAGES
SYSTEM_INSTRUCTIONS = gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
TOKEN_TYPE = gen_ai.GEN_AI_TOKEN_TYPE
WORKFLOW_NAME = gen_ai.GEN_AI_WORKFLOW_NAME
TOOL_NAME = gen_ai.GEN_AI_TOOL_NAME
TOOL_CALL_ID = gen_ai.GEN_AI_TOOL_CALL_ID
TOOL_CALL_ARGUMENTS = gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS
TOOL_CALL_RESULT = gen_ai.GEN_AI_TOOL_CALL_RESULT
CHAT = gen_ai.GenAiOperationNameValues.CHAT.value
INVOKE_WORKFLOW = gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value
EXECUTE_TOOL = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
TOKEN_INPUT = gen_ai.GenAiTokenTypeValues.INPUT.value
TOKEN_OUTPUT = gen_ai.GenAiTokenTypeValues.OUTPUT.value
ERROR_TYPE = error_attributes.ERROR_TYPE
EXCEPTION_TYPE = exception_attributes.EXCEPTION_TYPE
EXCEPTION_MESSAGE = exception_attributes.EXCEPTION_MESSAGE
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT

# -- ours -------------------------------------------------------------------------------------------------------
ENGINE_SPEC = "rapid.engine.spec"
ENGINE_BATCH_SIZE = "rapid.engine.batch_size"
ENGINE_IMAGES = "rapid.engine.images"
ENGINE_FAILURES = "rapid.engine.failures"
SAMPLE_ID = "rapid.id"
MODE = "rapid.mode"
PREDICTION = "rapid.prediction"
CORRECT = "rapid.correct"
VERDICT = "rapid.verdict"
FINISH_REASON = "rapid.reasoner.finish_reason"
QUESTION = "rapid.question"  # content: only when capturing is on
CAPTION = "rapid.caption"  # content: only when capturing is on
IMAGE_COUNT = "rapid.image.count"
IMAGE_WIDTH = "rapid.image.width"  # int array, one per image
IMAGE_HEIGHT = "rapid.image.height"
IMAGE_SHA256 = "rapid.image.sha256"  # of the bytes as given (file, bytes, data URL) or of the pixels (PIL)
ERRORS = "rapid.errors"

#: `gen_ai.provider.name` per spec prefix (an OpenAI-compatible server speaks OpenAI's API)
PROVIDERS = {"hf": "transformers", "vllm": "vllm", "openai": "openai", "langchain": "langchain"}
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

_capture_content: bool | None = None


def set_capture_content(value: bool | None) -> None:
    """Record prompt and completion text (True), never (False), or as the environment says (None)."""
    global _capture_content
    _capture_content = value


def capture_content() -> bool:
    if _capture_content is not None:
        return _capture_content
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("true", "1", "yes")


def spec_attributes(spec: str) -> dict[str, Any]:
    """Provider, request model and (for a server) its address, from an engine spec such as `openai:m@http://h:8/v1`."""
    spec = redact(spec, limit=300)
    provider, sep, model = spec.partition(":")
    if not sep:
        provider, model = "custom", spec
    attributes: dict[str, Any] = {ENGINE_SPEC: spec, PROVIDER_NAME: PROVIDERS.get(provider, provider)}
    name, at, url = model.partition("@")
    if at and "://" in url:
        parts = urlsplit(url)
        attributes[REQUEST_MODEL] = name
        if parts.hostname:
            attributes[SERVER_ADDRESS] = parts.hostname
        if parts.port:
            attributes[SERVER_PORT] = parts.port
    else:
        attributes[REQUEST_MODEL] = model
    return attributes


def image_digest(value: Any) -> tuple[int, int, str]:
    """(width, height, sha256) of one image as the caller gave it; (0, 0, "") when it cannot be read cheaply
    (a remote URL is never fetched). Only the header is decoded for the size."""
    from PIL import Image

    raw: bytes | None = None
    if isinstance(value, Image.Image):
        return value.width, value.height, hashlib.sha256(value.tobytes()).hexdigest()
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str) and value.startswith("data:"):
        try:
            raw = base64.b64decode(value.partition(",")[2])
        except ValueError:
            return 0, 0, ""
    elif isinstance(value, (str, Path)) and not str(value).lower().startswith(("http://", "https://")):
        try:
            raw = Path(value).expanduser().read_bytes()
        except OSError:
            return 0, 0, ""
    if not raw:
        return 0, 0, ""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return image.width, image.height, digest
    except Exception:  # an unreadable image still gets its hash; the graph reports why it cannot be used
        return 0, 0, digest


def image_attributes(state: dict) -> dict[str, Any]:
    """Count, sizes and hashes of the images in a graph state (`image` or `images`); empty when it has none."""
    images = state.get("images") or ([state["image"]] if state.get("image") is not None else [])
    if not isinstance(images, (list, tuple)) or not images:
        return {}
    digests = [image_digest(i) for i in images]
    return {
        IMAGE_COUNT: len(digests),
        IMAGE_WIDTH: [d[0] for d in digests],
        IMAGE_HEIGHT: [d[1] for d in digests],
        IMAGE_SHA256: [d[2] for d in digests],
    }


def record_exception(span: Any, error: BaseException) -> None:
    """The conventions' `exception` event, with the message and stack passed through `redact` (an engine's error
    may echo a request, headers included): what `Span.record_exception` writes, minus any credential."""
    import traceback

    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    span.add_event(
        "exception",
        {
            EXCEPTION_TYPE: type(error).__qualname__,
            EXCEPTION_MESSAGE: redact(error, limit=2000),
            exception_attributes.EXCEPTION_STACKTRACE: redact(stack, limit=8000),
        },
    )
