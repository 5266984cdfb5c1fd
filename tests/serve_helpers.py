"""Helpers for the server's tests: images as data URLs, chat messages that carry them, stand-in engines, and a
server on a free loopback port that is always stopped.

Import with `from tests.serve_helpers import ...` (pytest runs from the repository root).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image

from rapid_agent.backends import ChatRequest, Completion, GenerationConfig
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.serve import ServeConfig, ServerThread, create_app

CAPTION = "<caption>two red circles and a blue square</caption><solution>2 + 1 = 3</solution>"


def png_bytes(size: tuple[int, int] = (64, 64), color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_url(raw: bytes | None = None, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw if raw is not None else png_bytes()).decode()


def user_message(question: str, *urls: str) -> list[dict]:
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": [{"type": "text", "text": question}, *parts]}]


def tag_of(request: ChatRequest) -> str:
    """The `Q<n>` tag a test question carries, wherever the prompt template put the question."""
    found = re.findall(r"\bQ\d+\b", request.prompt)
    return found[-1] if found else "?"


class RecordingEngine(FunctionEngine):
    """A FunctionEngine that also keeps the generation settings of each call."""

    def __init__(self, fn: Any, **kwargs: Any) -> None:
        super().__init__(fn, **kwargs)
        self.gens: list[GenerationConfig] = []

    def generate(self, requests, gen):  # type: ignore[override]
        self.gens.append(gen)
        return super().generate(requests, gen)


class StreamingEngine(FunctionEngine):
    """A FunctionEngine that streams its answer word by word (`streams = True`), counting streamed requests."""

    streams = True

    def __init__(self, fn: Any, **kwargs: Any) -> None:
        super().__init__(fn, **kwargs)
        self.streamed: list[ChatRequest] = []

    async def astream(self, request: ChatRequest, gen: GenerationConfig) -> AsyncIterator[str | Completion]:
        self.streamed.append(request)
        text = self.fn(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            yield word if i == len(words) - 1 else word + " "
        yield Completion(text, len(request.prompt.split()), len(words), finish_reason="stop")


@contextmanager
def running(pipelines: dict, config: ServeConfig | None = None, **kwargs: Any) -> Iterator[ServerThread]:
    """A server for `pipelines` on a free loopback port, stopped (drained) on exit."""
    server = ServerThread(create_app(pipelines, config, **kwargs), drain_timeout_s=10).start()
    try:
        yield server
    finally:
        server.stop(timeout_s=20)
