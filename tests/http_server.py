"""A scriptable OpenAI-style chat-completions server on loopback, for tests of HTTP engines.

    with FakeChatServer() as server:                 # binds 127.0.0.1 on a free port, serves in a thread
        engine = OpenAIEngine("m", base_url=server.base_url, role="reasoner")
        server.handler = lambda seen: Reply(500) if seen.attempt < 3 else echo_reply(seen)

Every request is recorded as a `SeenRequest` (path, headers, JSON body, how many times the same prompt has been
seen), and the server tracks how many requests it is answering at once. Slow replies wait on an event that
`stop()` sets, so no handler thread outlives the test by more than a moment.

Import it from a test file with `from tests.http_server import ...` (run pytest as `python -m pytest` from the
repository root, or put the root on `sys.path` first).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# No scripted delay may exceed this: a test that forgets to stop the server still finishes.
MAX_DELAY_S = 10.0


@dataclass
class Reply:
    """What the server answers: a status, a JSON (dict) or text body, extra headers, and a delay before it."""

    status: int = 200
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class SeenRequest:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: Any
    #: 1 for the first request with this prompt, 2 for its first retry, ...
    attempt: int
    received_at: float

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def prompt(self) -> str:
        """The text of the last user message (the text parts of a multi-part content)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def image_urls(self) -> list[str]:
        urls = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                urls += [p["image_url"]["url"] for p in content if p.get("type") == "image_url"]
        return urls


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def chat_reply(text: str, *, prompt_tokens: int = 0, completion_tokens: int = 0, **message_extra: Any) -> Reply:
    """A 200 reply in the OpenAI chat-completions shape; `message_extra` adds fields such as reasoning_content."""
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "fake",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text, **message_extra}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(200, body)


def echo_reply(seen: SeenRequest) -> Reply:
    """Answers `echo: <prompt>`, counting words as tokens so a test can check the usage round trip."""
    text = f"echo: {seen.prompt}"
    return chat_reply(text, prompt_tokens=len(seen.prompt.split()), completion_tokens=len(text.split()))


def error_reply(status: int, message: str, **headers: str) -> Reply:
    """An error in OpenAI's shape, `{"error": {"message": ...}}`."""
    return Reply(status, {"error": {"message": message, "type": "test_error", "code": status}}, dict(headers))


class FakeChatServer:
    """A threaded HTTP server on 127.0.0.1 that answers `POST /v1/chat/completions` with `handler(seen)`."""

    def __init__(self, handler: Callable[[SeenRequest], Reply] = echo_reply) -> None:
        self.handler = handler
        self.seen: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-style base, `http://127.0.0.1:<port>/v1`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def attempts(self, prompt: str) -> int:
        """How many requests carried this prompt."""
        with self._lock:
            return sum(1 for s in self.seen if s.prompt == prompt)

    def start(self) -> FakeChatServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            # A socket timeout ends any connection a client leaves half-open, so handler threads always finish.
            timeout = 5

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # clients that hang up are expected
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-chat-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases handlers sleeping through a scripted delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = self._reply(http, body)
        finally:
            # Counted out before the reply is written: once the client has it, it may send the next request at
            # once, and that one must not look concurrent with this one.
            with self._lock:
                self.in_flight -= 1
        self._send(http, reply)

    def _reply(self, http: BaseHTTPRequestHandler, body: Any) -> Reply:
        prompt = SeenRequest(http.path, {}, body, 0, 0.0).prompt
        headers = {k.lower(): v for k, v in http.headers.items()}
        with self._lock:
            attempt = 1 + sum(1 for s in self.seen if s.prompt == prompt)
            seen = SeenRequest(http.path, headers, body, attempt, time.time())
            self.seen.append(seen)
        if http.path.rstrip("/") != "/v1/chat/completions":
            reply = error_reply(404, f"no route {http.path}")
        else:
            try:
                reply = self.handler(seen)
            except Exception as exc:  # a broken test handler shows up as a 500 naming the bug
                reply = error_reply(500, f"test handler raised {type(exc).__name__}: {exc}")
        if reply.delay_s:
            self._stopping.wait(min(reply.delay_s, MAX_DELAY_S))
        return reply

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, reply: Reply) -> None:
        if isinstance(reply.body, dict):
            payload, ctype = json.dumps(reply.body).encode(), "application/json"
        else:
            payload, ctype = (reply.body or "").encode(), "text/plain"
        try:
            http.send_response(reply.status)
            http.send_header("Content-Type", ctype)
            http.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                http.send_header(key, value)
            http.end_headers()
            http.wfile.write(payload)
        except OSError:
            pass  # the client timed out and hung up; that is what some tests script
