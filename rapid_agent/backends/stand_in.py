"""Stand-in engines for tests and for users' own unit tests: no model, deterministic, and they count their calls.

`FunctionEngine` answers each request with a function of it; `ScriptedEngine` replays fixed outputs. Both record
every engine call so tests can assert how requests were batched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from rapid_agent.backends.base import ChatRequest, Completion, Engine, GenerationConfig


class FunctionEngine(Engine):
    """Answers each request with `fn(request) -> str` (or raises, which fails just that request)."""

    def __init__(
        self,
        fn: Callable[[ChatRequest], str],
        *,
        spec: str = "function",
        delay_s: float = 0.0,
        max_batch_size: int = 64,
    ) -> None:
        self.fn = fn
        self.spec = spec
        self.delay_s = delay_s
        self.max_batch_size = max_batch_size
        self.calls: list[list[ChatRequest]] = []
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[ChatRequest], gen: GenerationConfig) -> list[Completion | Exception]:
        with self._lock:
            self.calls.append(list(requests))
        if self.delay_s:
            time.sleep(self.delay_s)
        out: list[Completion | Exception] = []
        for request in requests:
            try:
                text = self.fn(request)
            except Exception as exc:  # a failing request is that request's outcome, not the batch's
                out.append(exc)
                continue
            out.append(Completion(text, len(request.prompt.split()), len(text.split())))
        return out

    @property
    def num_calls(self) -> int:
        return len(self.calls)

    @property
    def num_requests(self) -> int:
        return sum(len(c) for c in self.calls)


class ScriptedEngine(FunctionEngine):
    """Replays `outputs` in order, cycling when they run out."""

    def __init__(self, outputs: Iterable[str], **kwargs) -> None:
        self.outputs = list(outputs)
        if not self.outputs:
            raise ValueError("ScriptedEngine needs at least one output")
        self._next = 0
        super().__init__(self._reply, spec=kwargs.pop("spec", "scripted"), **kwargs)

    def _reply(self, request: ChatRequest) -> str:
        text = self.outputs[self._next % len(self.outputs)]
        self._next += 1
        return text
