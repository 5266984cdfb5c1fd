"""The server's limits over loopback: every bad request is a 4xx in OpenAI's error shape naming what is wrong, the
bounded queue answers 429 under load (never 500), timeouts are 504, shutdown drains, and nothing secret is logged."""

import asyncio
import base64
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from PIL import Image

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.serve import ServeConfig
from tests.serve_helpers import data_url, png_bytes, running, user_message


def pipelines(delay_s: float = 0.0, **context) -> dict:
    cap = FunctionEngine(lambda r: "<caption>a red square</caption><solution>1</solution>", delay_s=delay_s)
    rea = FunctionEngine(lambda r: "\\boxed{1}", delay_s=delay_s)
    return {"rapid": RapidContext(captioner=cap, reasoner=rea, **context)}


def post(server, body, *, headers=None, raw: bytes | None = None) -> httpx.Response:
    url = server.base_url + "/chat/completions"
    if raw is not None:
        return httpx.post(url, content=raw, headers={"Content-Type": "application/json", **(headers or {})})
    return httpx.post(url, json=body, headers=headers or {}, timeout=30)


def chat(question="Q?", *urls, **extra) -> dict:
    return {"model": "rapid", "messages": user_message(question, *urls), **extra}


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code", "param"} <= set(body["error"]), body
    return body["error"]


@pytest.fixture(scope="module")
def server():
    with running(
        pipelines(max_question_chars=200), ServeConfig(max_body_bytes=200_000, max_image_pixels=250_000)
    ) as s:
        yield s


def test_malformed_json_missing_fields_and_wrong_types_are_400(server):
    r = post(server, None, raw=b'{"model": "rapid", "messages": [')
    assert r.status_code == 400 and error_of(r)["message"] == "the request body is not valid JSON"
    r = post(server, {"model": "rapid"})
    assert r.status_code == 400 and error_of(r)["message"].startswith("messages: Field required")
    r = post(server, {"model": "rapid", "messages": [{"role": "user", "content": [{"type": "audio"}]}]})
    assert r.status_code == 400 and error_of(r)["param"].startswith("messages[0].content")
    r = post(server, chat("Q?", data_url(), n=2))
    assert r.status_code == 400 and "only n=1" in error_of(r)["message"]
    r = post(server, chat("Q?", data_url(), rapid={"answer": "1", "bogus": 1}))
    assert r.status_code == 400 and error_of(r)["param"] == "rapid.bogus"


def test_image_problems_are_400_naming_the_message_part(server):
    r = post(server, chat("How many?"))
    assert r.status_code == 400 and error_of(r)["code"] == "missing_image"
    assert "messages[0]" in error_of(r)["message"] and "needs one" in error_of(r)["message"]
    r = post(server, chat("How many?", data_url(b"not a png at all")))
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_image"
    assert error_of(r)["param"] == "messages[0].content[1].image_url.url"
    truncated = png_bytes((64, 64))[:60]
    r = post(server, chat("How many?", data_url(truncated)))
    assert r.status_code == 400 and "cannot decode" in error_of(r)["message"]
    r = post(server, chat("How many?", "data:image/png;base64,%%%"))
    assert r.status_code == 400 and "base64" in error_of(r)["message"]
    r = post(server, chat("How many?", "/etc/passwd"))  # never read as a server-side path
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_image"
    r = post(server, chat("How many?", "https://example.com/cat.png"))
    assert r.status_code == 400 and "remote image URLs are not fetched" in error_of(r)["message"]
    # bare base64 (no data: prefix) is an image too
    bare = base64.b64encode(png_bytes()).decode()
    assert post(server, chat("How many?", bare)).status_code == 200


def test_a_seed_engines_cannot_take_is_400_naming_seed(server):
    for seed in (2**70, 2**63, -1):
        r = post(server, chat("Q?", data_url(), seed=seed))
        assert r.status_code == 400 and error_of(r)["param"] == "seed", (seed, r.text)
        assert error_of(r)["message"].startswith("seed: ")
    assert post(server, chat("Q?", data_url(), seed=2**63 - 1)).status_code == 200


def test_bytes_that_are_no_image_are_described_without_an_object_repr(server):
    r = post(server, chat("How many?", data_url(b"just some text, not an image\n", mime="text/plain")))
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_image"
    message = error_of(r)["message"]
    assert "cannot decode the image: not a recognised image format" in message
    assert "BytesIO" not in message and " object at 0x" not in message


def test_too_many_pixels_is_refused_from_the_header_and_a_long_question_too(server):
    # 1000 x 1000 = 1,000,000 pixels > 250,000, in a PNG of a few kB: refused without being decoded
    r = post(server, chat("How many?", data_url(png_bytes((1000, 1000)))))
    assert r.status_code == 400 and error_of(r)["code"] == "image_too_large"
    assert "1000x1000 = 1,000,000 pixels" in error_of(r)["message"] and "250,000" in error_of(r)["message"]
    r = post(server, chat("x" * 500, data_url()))
    assert r.status_code == 400 and "500 characters long; the limit is 200" in error_of(r)["message"]
    assert error_of(r)["param"] == "messages[0].content"


def test_oversized_bodies_are_413_whether_declared_or_chunked(server):
    big = json.dumps(chat("How many?", data_url(b"x" * 300_000))).encode()
    r = post(server, None, raw=big)
    assert r.status_code == 413 and "200,000 bytes" in error_of(r)["message"]

    def chunks():  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 50_000):
            yield big[i : i + 50_000]

    r = httpx.post(
        server.base_url + "/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "200,000 bytes" in error_of(r)["message"]


def test_unknown_model_is_404_and_unknown_route_is_404_in_the_error_shape(server):
    r = post(server, {**chat("Q?", data_url()), "model": "gpt-9"})
    assert r.status_code == 404 and error_of(r)["code"] == "model_not_found" and "rapid" in error_of(r)["message"]
    r = httpx.get(server.base_url + "/nothing-here")
    assert r.status_code == 404 and error_of(r)["message"]


def test_api_keys_compare_and_leave_health_open(tmp_path, monkeypatch):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nsk-first-key-123\n\nsk-second-key-456\n")
    monkeypatch.setenv("RAPID_TEST_KEYS", "env-key-789")
    from rapid_agent.serve.auth import load_api_keys

    accepted = load_api_keys(keys, "RAPID_TEST_KEYS")
    assert accepted == ("sk-first-key-123", "sk-second-key-456", "env-key-789")
    with running(pipelines(), api_keys=accepted) as server:
        for key in accepted:
            c = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            assert c.chat.completions.create(model="rapid", messages=user_message("Q?", data_url())).choices
        for bad in ("sk-first-key-12", "sk-first-key-1234", ""):
            c = openai.OpenAI(base_url=server.base_url, api_key=bad or "-", max_retries=0)
            with pytest.raises(openai.AuthenticationError) as caught:
                c.models.list()
            assert caught.value.body["code"] == "invalid_api_key"
        r = httpx.post(server.base_url + "/chat/completions", content=b"{not json")  # no key: 401 before parsing
        assert r.status_code == 401
        r = httpx.post(
            server.base_url + "/chat/completions", json={}, headers={"Authorization": "Basic sk-first-key-123"}
        )
        assert r.status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.get(server.url + "/metrics").status_code == 200


def test_load_200_concurrent_requests_get_only_200_or_429_and_every_accepted_one_is_answered():
    config = ServeConfig(max_active=4, max_queue=8, request_timeout_s=60)
    with running(pipelines(delay_s=0.05), config) as server:

        async def hammer():
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(limits=limits, timeout=60) as client:
                body = chat("Q?", data_url())
                return await asyncio.gather(
                    *(client.post(server.base_url + "/chat/completions", json=body) for _ in range(200))
                )

        responses = asyncio.run(hammer())
        metrics = httpx.get(server.url + "/metrics").text
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    ok, refused = statuses.count(200), statuses.count(429)
    assert ok >= 12 and refused >= 1, (ok, refused)
    assert all(r.json()["choices"][0]["message"]["content"] == "\\boxed{1}" for r in responses if r.status_code == 200)
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1 and error_of(r)["code"] == "queue_full"
    assert f'rapid_requests_total{{model="rapid",status="200"}} {float(ok)}' in metrics
    assert f'rapid_requests_total{{model="rapid",status="429"}} {float(refused)}' in metrics


def test_a_request_past_its_timeout_is_504_and_frees_its_slot():
    config = ServeConfig(request_timeout_s=0.3, max_active=1, max_queue=0)
    slow = {"rapid": RapidContext(captioner=FunctionEngine(lambda r: "x", delay_s=1.0), reasoner=FunctionEngine(str))}
    with running(slow, config) as server:
        r = post(server, chat("Q?", data_url()))
        assert r.status_code == 504 and "0.3s" in error_of(r)["message"]
        assert httpx.get(server.url + "/health").json()["active"] == 0
        # streamed, the perception is over before the first byte: its timeout is a 504 too
        stream = httpx.post(
            server.base_url + "/chat/completions", json=chat("Q?", data_url(), stream=True), timeout=10
        )
        assert stream.status_code == 504 and error_of(stream)["code"] == "timeout"
        time.sleep(1.0)  # the slow captioner call of the first request is done: the next one is not refused
        assert httpx.get(server.url + "/health").json()["active"] == 0
    # a reasoner past the deadline, once the stream has begun, ends it with an error event
    slow = {"rapid": RapidContext(captioner=FunctionEngine(lambda r: "x"), reasoner=FunctionEngine(str, delay_s=1.0))}
    with running(slow, config) as server:
        stream = httpx.post(
            server.base_url + "/chat/completions", json=chat("Q?", data_url(), stream=True), timeout=10
        )
        assert stream.status_code == 200 and '"code": "timeout"' in stream.text and stream.text.endswith("[DONE]\n\n")
        assert httpx.get(server.url + "/health").json()["active"] == 0


def test_shutdown_drains_in_flight_requests_and_refuses_new_ones_with_503():
    from rapid_agent.serve import ServerThread, create_app

    server = ServerThread(create_app(pipelines(delay_s=1.0)), drain_timeout_s=20).start()
    results = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", post(server, chat("Q?", data_url()))))
    slow.start()
    time.sleep(0.3)  # the slow request is in flight
    server.drain()
    refused = post(server, chat("Q?", data_url()))
    assert refused.status_code == 503 and error_of(refused)["code"] == "shutting_down"
    assert httpx.get(server.url + "/health").status_code == 503
    slow.join(20)
    assert results["slow"].status_code == 200 and results["slow"].json()["choices"][0]["message"]["content"]
    server.stop(timeout_s=20)
    assert server.stopped


def test_unexpected_errors_are_a_bare_500_and_logs_hold_no_key_or_image(caplog, monkeypatch):
    from rapid_agent.serve.pipeline import Pipeline

    secret_key = "sk-do-not-log-this-key-0123456789"
    image = data_url(png_bytes((50, 50), "green"))

    leaked = "sk-live-" + "abcdefghijklmnop"  # built at run time: a traceback's source lines must not hold it

    async def explode(self, sample, context):
        raise RuntimeError(f"bug with a secret: api_key={leaked}")

    monkeypatch.setattr(Pipeline, "answer", explode)
    caplog.set_level(logging.DEBUG)
    with running(pipelines(), api_keys=[secret_key]) as server:
        r = post(server, chat("Q?", image), headers={"Authorization": f"Bearer {secret_key}"})
        post(server, chat("Q?", image), headers={"Authorization": "Bearer wrong-key-000000"})
    assert r.status_code == 500
    assert error_of(r)["code"] == "internal_error" and "Traceback" not in r.text and "secret" not in r.text
    client_side = ("httpx", "httpcore", "openai")  # the test's own client logs its headers at DEBUG
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith(client_side)
    )
    assert "RuntimeError" in logged and "[REDACTED]" in logged
    assert secret_key not in logged and leaked not in logged
    assert image.split(",", 1)[1][:40] not in logged


class _ImageHost(BaseHTTPRequestHandler):
    """Serves /small.png, /big.png (over the limit) and /slow.png (never finishes in time) on loopback."""

    def do_GET(self):  # noqa: N802
        if self.path == "/slow.png":
            time.sleep(1.5)
        body = png_bytes((32, 32)) if self.path != "/big.png" else png_bytes((8, 8)) + b"\0" * 50_000
        self.send_response(200 if self.path != "/missing.png" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_remote_images_when_allowed_within_size_and_time_limits():
    host = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHost)
    host.daemon_threads = True
    threading.Thread(target=host.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{host.server_address[1]}"
    config = ServeConfig(
        allow_remote_images=True,
        remote_image_allow=("127.0.0.1",),  # the loopback host stands in for a public one
        remote_image_max_bytes=20_000,
        remote_image_timeout_s=0.5,
    )
    try:
        with running(pipelines(), config) as server:
            assert post(server, chat("Q?", f"{base}/small.png")).status_code == 200
            r = post(server, chat("Q?", f"{base}/big.png"))
            assert r.status_code == 413 and "20,000 bytes" in error_of(r)["message"]
            r = post(server, chat("Q?", f"{base}/slow.png"))
            assert r.status_code == 400 and "longer than 0.5s" in error_of(r)["message"]
            r = post(server, chat("Q?", f"{base}/missing.png"))
            assert r.status_code == 400 and "HTTP 404" in error_of(r)["message"]
    finally:
        host.shutdown()
        host.server_close()


def test_pixel_check_reads_only_the_header():
    from rapid_agent.serve.errors import APIError
    from rapid_agent.serve.inputs import check_pixels

    huge = Image.new("1", (8_000, 8_000))  # 64 MP, a few kB as a bilevel PNG
    import io

    buf = io.BytesIO()
    huge.save(buf, "PNG")
    started = time.perf_counter()
    with pytest.raises(APIError) as caught:
        check_pixels(buf.getvalue(), "img", 25_000_000)
    assert caught.value.status == 400 and "pixels" in caught.value.message
    assert time.perf_counter() - started < 1.0


def test_corrupted_images_are_never_a_server_error(server):
    """Truncations and byte flips of real PNG, JPEG and GIF files: each answer is a 200 or a 400 naming the part."""
    import random

    rng = random.Random(0)
    originals = []
    for fmt in ("PNG", "JPEG", "GIF"):
        import io

        buf = io.BytesIO()
        Image.new("RGB", (48, 40), "purple").save(buf, fmt)
        originals.append(buf.getvalue())
    statuses = []
    for i in range(36):
        raw = bytearray(originals[i % 3])
        if i % 2:
            raw = raw[: rng.randrange(8, len(raw))]
        else:
            for _ in range(8):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        r = post(server, chat("Q?", data_url(bytes(raw))))
        statuses.append(r.status_code)
        if r.status_code == 400:
            assert error_of(r)["param"] == "messages[0].content[1].image_url.url"
    assert set(statuses) <= {200, 400} and 400 in statuses, statuses
