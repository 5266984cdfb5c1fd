"""Running the app under uvicorn with a graceful drain: on the first SIGTERM/SIGINT the server keeps listening but
answers new requests with 503, lets the admitted ones finish (at most `drain_timeout_s`), then shuts down the way
uvicorn does. A second signal skips the wait (SIGINT twice: at once).

`run_server` blocks (the CLI); `ServerThread` serves in a background thread on a free loopback port (tests,
benchmarks, notebooks) and drains the same way on `stop()`.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from rapid_agent.serve.limits import Gate

#: once drained, how long uvicorn waits for connections to close before cancelling what is left
_CLOSE_TIMEOUT_S = 5.0


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose first exit signal starts a drain instead of an immediate shutdown."""

    def __init__(self, config: uvicorn.Config, gate: Gate, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.gate = gate
        self.drain_timeout_s = drain_timeout_s
        self._drain_since: float | None = None
        self._drain_signal = signal.SIGTERM

    @property
    def draining(self) -> bool:
        return self._drain_since is not None

    def begin_drain(self, sig: int = signal.SIGTERM) -> None:
        """Refuse new requests from now on; shut down once the admitted ones are done (thread-safe)."""
        if self._drain_since is None:
            self._drain_signal = sig
            self.gate.draining = True
            self._drain_since = time.monotonic()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_since is None and not self.should_exit:
            self.begin_drain(sig)
        else:
            super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_since is not None and not self.should_exit:
            overdue = time.monotonic() - self._drain_since > self.drain_timeout_s
            if self.gate.in_flight == 0 or overdue:
                super().handle_exit(self._drain_signal, None)
        return await super().on_tick(counter)


def _server(app: FastAPI, drain_timeout_s: float, **config: object) -> DrainingServer:
    options = {"timeout_graceful_shutdown": _CLOSE_TIMEOUT_S, "log_level": "info", **config}
    return DrainingServer(uvicorn.Config(app, **options), app.state.serve.gate, drain_timeout_s)


def run_server(app: FastAPI, *, host: str, port: int, drain_timeout_s: float, log_level: str = "info") -> None:
    """Serve `app` until a signal, then drain (blocking)."""
    _server(app, drain_timeout_s, host=host, port=port, log_level=log_level).run()


class ServerThread:
    """`app` served by uvicorn in a daemon thread on `host` (loopback) and a free port.

    with ServerThread(create_app(...)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-")
    """

    def __init__(
        self, app: FastAPI, *, host: str = "127.0.0.1", drain_timeout_s: float = 30.0, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self.server = _server(app, drain_timeout_s, log_level=log_level, lifespan="off")
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True, name=f"rapid-serve:{self.port}"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base, `http://127.0.0.1:<port>/v1`."""
        return self.url + "/v1"

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def drain(self) -> None:
        """Start the graceful shutdown without waiting for it."""
        self.server.begin_drain()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Drain, then wait for the server to be gone."""
        self.drain()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.server.force_exit = self.server.should_exit = True
            self._thread.join(10)
        self._socket.close()

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
