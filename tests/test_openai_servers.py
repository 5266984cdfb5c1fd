"""Several servers behind one openai: engine (`openai:<model>@<url>,<url>,...`), on loopback: requests spread over
them, the one with fewer outstanding requests gets more, and a server killed mid-run is taken out while the others
carry every request to the end."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from rapid_agent.backends import ChatRequest, Completion, GenerationConfig, load_engine
from rapid_agent.backends.openai_servers import ServerPool
from tests.http_server import FakeChatServer, Reply, SeenRequest, echo_reply

GEN = GenerationConfig(temperature=0.0, max_new_tokens=8)


class KillableServer(FakeChatServer):
    """A server that can die: once killed, requests in flight get their connection dropped without a reply, and
    new connections are refused."""

    def __init__(self, handler) -> None:
        super().__init__(handler)
        self.killed = threading.Event()

    def kill(self) -> None:
        self.killed.set()
        self.stop()

    def _send(self, http: BaseHTTPRequestHandler, reply: Reply) -> None:
        if self.killed.is_set():
            http.close_connection = True  # the process died: no reply, the socket closes
            return
        super()._send(http, reply)


def slow(delay_s: float):
    def handler(seen: SeenRequest) -> Reply:
        reply = echo_reply(seen)
        reply.delay_s = delay_s
        return reply

    return handler


def engine_for(*servers: FakeChatServer, **options):
    urls = ",".join(s.base_url for s in servers)
    options = {"max_concurrency": 12, "backoff_s": 0.01, "max_retries": 3, "timeout_s": 10.0, **options}
    return load_engine(f"openai:test-model@{urls}", "reasoner", cache=False, **options)


def ask(engine, n: int) -> list:
    return engine.generate([ChatRequest(f"question {i}") for i in range(n)], GEN)


def test_requests_spread_over_every_server() -> None:
    servers = [FakeChatServer(slow(0.05)).start() for _ in range(3)]
    try:
        out = ask(engine_for(*servers), 60)
    finally:
        for s in servers:
            s.stop()
    assert all(isinstance(o, Completion) for o in out)
    assert [o.text for o in out] == [f"echo: question {i}" for i in range(60)]
    counts = [len(s.seen) for s in servers]
    assert sum(counts) == 60 and min(counts) >= 15, counts


def test_the_server_with_fewer_outstanding_requests_gets_more() -> None:
    fast, slow_ = FakeChatServer(slow(0.01)).start(), FakeChatServer(slow(0.3)).start()
    try:
        out = ask(engine_for(fast, slow_, max_concurrency=4), 40)
    finally:
        fast.stop()
        slow_.stop()
    assert all(isinstance(o, Completion) for o in out)
    assert len(fast.seen) > 3 * len(slow_.seen), (len(fast.seen), len(slow_.seen))


def test_a_server_killed_mid_run_is_taken_out_and_the_others_carry_on() -> None:
    first = threading.Event()

    def dying(seen: SeenRequest) -> Reply:
        first.set()
        reply = echo_reply(seen)
        reply.delay_s = 0.2  # requests are in flight on it when it dies
        return reply

    doomed = KillableServer(dying).start()
    others = [FakeChatServer(slow(0.05)).start() for _ in range(2)]
    killer = threading.Thread(target=lambda: first.wait(5) and doomed.kill())
    killer.start()
    try:
        out = ask(engine_for(doomed, *others), 80)
    finally:
        killer.join()
        for s in [doomed, *others]:
            s.stop()
    failed = [o for o in out if not isinstance(o, Completion)]
    assert not failed, failed[:3]
    assert [o.text for o in out] == [f"echo: question {i}" for i in range(80)]
    assert doomed.killed.is_set() and len(doomed.seen) < 80 // 3  # it got some, then none
    assert sum(len(s.seen) for s in others) >= 80 - len(doomed.seen)


def test_the_pool_takes_a_server_out_for_its_cooldown_then_back() -> None:
    now = [0.0]
    pool = ServerPool(["a", "b"], cooldown_s=10, clock=lambda: now[0])
    assert pool.take_out(0, "refused") is True and pool.live() == ["b"]
    assert [pool.acquire() for _ in range(3)] == [1, 1, 1]
    now[0] = 11.0
    assert pool.live() == ["a", "b"] and pool.acquire() == 0  # back, and the least loaded
    pool.take_out(0, "refused")
    assert pool.take_out(1, "refused") is False  # none left: requests still go somewhere
    assert pool.acquire() in (0, 1)
