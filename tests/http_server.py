"""A scriptable OpenAI-style chat-completions server on loopback, for tests of HTTP engines.

    with FakeChatServer() as server:                 # binds 127.0.0.1 on a free port, serves in a thread
        engine = OpenAIEngine("m", base_url=server.base_url, role="reasoner")
        server.handler = lambda seen: Reply(500) if seen.attempt < 3 else echo_reply(seen)

Every request is recorded as a `SeenRequest` (path, headers, JSON body, how many times the same prompt has been
seen), and the server tracks how many requests it is answering at once. Slow replies wait on an event that
`stop()` sets, so no handler thread outlives the test by more than a moment.

A reply with `events` is a server-sent-event stream (what `"stream": true` asks for): each dict goes out as one
`data:` line of JSON, each string as it is (`"[DONE]"`, or garbage). `stream_events` builds OpenAI-style chunks.
A stream can stop early (leave out the last chunks: the connection closes as if the server were done), be cut
mid-body (`cut_after`: a Content-Length that promises more than is sent), or pause after some events until the
test releases it (`pause`), which shows whether the client really hands text on as it arrives.

Import it from a test file with `from tests.http_server import ...` (run pytest as `python -m pytest` from the
repository root, or put the root on `sys.path` first).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# No scripted delay may exceed this: a test that forgets to stop the server still finishes.
MAX_DELAY_S = 10.0


@dataclass
class Reply:
    """What the server answers: a status, a JSON (dict or list) or text body, extra headers, and a delay before it;
    or, with `events`, a stream of server-sent events."""

    status: int = 200
    body: dict | list | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    #: a server-sent-event stream instead of `body`: dicts are sent as JSON, strings as they are
    events: list[dict | str] | None = None
    #: stop after this many events although the Content-Length promised them all (a server dying mid-body)
    cut_after: int | None = None
    #: after `pause_after` events, wait until the test sets `pause` (at most MAX_DELAY_S) before sending the rest
    pause: threading.Event | None = None
    pause_after: int = 1
    #: send `body` a few bytes at a time with this pause between them (a server trickling its reply)
    trickle_s: float = 0.0


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


def stream_events(
    pieces: Sequence[str],
    *,
    reasoning: Sequence[str] = (),
    finish_reason: str | None = "stop",
    usage: tuple[int, int] | None = None,
    done: bool = True,
) -> list[dict | str]:
    """OpenAI-style `chat.completion.chunk` events: the role, the reasoning pieces (`reasoning_content` deltas),
    the answer pieces, a chunk with `finish_reason` (None leaves it out), a usage chunk if `usage` is given as
    (prompt, completion) tokens, and `[DONE]` unless `done` is False."""

    def chunk(choices: list[dict], **extra: Any) -> dict:
        return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "fake", "choices": choices, **extra}

    def delta(**fields: Any) -> dict:
        return chunk([{"index": 0, "delta": fields, "finish_reason": None}])

    events: list[dict | str] = [delta(role="assistant", content="")]
    events += [delta(reasoning_content=r) for r in reasoning]
    events += [delta(content=p) for p in pieces]
    if finish_reason is not None:
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": finish_reason}]))
    if usage is not None:
        events.append(chunk([], usage={"prompt_tokens": usage[0], "completion_tokens": usage[1]}))
    if done:
        events.append("[DONE]")
    return events


def wants_usage(seen: SeenRequest) -> bool:
    """Whether a streamed request asked for a usage chunk (`stream_options.include_usage`)."""
    options = seen.body.get("stream_options") if isinstance(seen.body, dict) else None
    return isinstance(options, dict) and bool(options.get("include_usage"))


def echo_reply(seen: SeenRequest) -> Reply:
    """Answers `echo: <prompt>`, counting words as tokens so a test can check the usage round trip."""
    text = f"echo: {seen.prompt}"
    if isinstance(seen.body, dict) and seen.body.get("stream"):
        pieces = [word + " " for word in text.split(" ")]
        pieces[-1] = pieces[-1].rstrip(" ")
        usage = (len(seen.prompt.split()), len(text.split())) if wants_usage(seen) else None
        return Reply(events=stream_events(pieces, usage=usage))
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
        #: for each paused stream, whether the test released it in time (False: it waited MAX_DELAY_S)
        self.pauses: list[bool] = []
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
        if reply.events is not None:
            self._send_events(http, reply)
        else:
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

    def _send_events(self, http: BaseHTTPRequestHandler, reply: Reply) -> None:
        events = [
            ("data: " + (json.dumps(e) if isinstance(e, dict) else e) + "\n\n").encode() for e in reply.events or []
        ]
        try:
            http.send_response(reply.status)
            http.send_header("Content-Type", "text/event-stream")
            http.send_header("Cache-Control", "no-cache")
            if reply.cut_after is not None:
                http.send_header("Content-Length", str(sum(len(e) for e in events)))
            for key, value in reply.headers.items():
                http.send_header(key, value)
            http.end_headers()
            for i, event in enumerate(events):
                if reply.cut_after is not None and i == reply.cut_after:
                    break  # the handler returns and the connection closes short of the promised length
                if reply.pause is not None and i == reply.pause_after:
                    released = reply.pause.wait(MAX_DELAY_S)
                    with self._lock:
                        self.pauses.append(released)
                http.wfile.write(event)
                http.wfile.flush()
        except OSError:
            pass  # the client hung up mid-stream
        # HTTP/1.0 without a Content-Length: closing the connection ends the stream, early or not.
        http.close_connection = True

    def _send(self, http: BaseHTTPRequestHandler, reply: Reply) -> None:
        if isinstance(reply.body, (dict, list)):
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
            step = 16 if reply.trickle_s else len(payload) or 1
            for start in range(0, len(payload), step):
                if start and reply.trickle_s and self._stopping.wait(reply.trickle_s):
                    return
                http.wfile.write(payload[start : start + step])
                http.wfile.flush()
        except OSError:
            pass  # the client timed out and hung up; that is what some tests script
