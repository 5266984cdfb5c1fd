"""Remote images and SSRF: the server fetches an image URL only from public addresses, or from internal ones its
allow-list names; each redirect is checked again, a host name by every address it resolves to, the connection goes
to the checked address (with the URL's Host header), and the address a connection reached is checked once more.

A loopback HTTP server stands in for the internal service a client must not reach through the server."""

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import httpcore
import httpx
import pytest

from rapid_agent import RapidContext
from rapid_agent.backends.stand_in import FunctionEngine
from rapid_agent.serve import ServeConfig
from rapid_agent.serve import fetch as fetch_module
from rapid_agent.serve.errors import APIError
from rapid_agent.serve.fetch import AddressPolicy, GuardedBackend, address_kind, fetch_image
from tests.serve_helpers import png_bytes, running, user_message

PARAM = "messages[0].content[1].image_url.url"


class _InternalHost(BaseHTTPRequestHandler):
    """/small.png, /to?url=<where> (a 302 there), /loop (redirects to itself); every request's path and Host kept."""

    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        if self.path.startswith("/to?url="):
            self._answer(302, b"", {"Location": self.path.removeprefix("/to?url=")})
        elif self.path == "/loop":
            self._answer(302, b"", {"Location": "/loop"})
        else:
            self._answer(200, png_bytes((32, 32)), {"Content-Type": "image/png"})

    def _answer(self, status, body, headers):
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def internal():
    host = ThreadingHTTPServer(("127.0.0.1", 0), _InternalHost)
    host.daemon_threads = True
    threading.Thread(target=host.serve_forever, daemon=True).start()
    yield host
    host.shutdown()
    host.server_close()


@pytest.fixture
def seen(internal):
    _InternalHost.seen = []
    return _InternalHost.seen


def fetch(url: str, *allow: str, backend=None) -> bytes:
    config = ServeConfig(allow_remote_images=True, remote_image_allow=allow, remote_image_timeout_s=5)
    return asyncio.run(fetch_image(url, PARAM, config, backend=backend))


def refusal(url: str, *allow: str, backend=None) -> APIError:
    with pytest.raises(APIError) as caught:
        fetch(url, *allow, backend=backend)
    assert caught.value.status == 400 and caught.value.param == PARAM and caught.value.code == "image_url_refused"
    return caught.value


def test_the_server_refuses_an_internal_image_host_unless_its_allow_list_names_it(internal, seen):
    url = f"http://127.0.0.1:{internal.server_address[1]}/small.png"
    cap = FunctionEngine(lambda r: "<caption>a square</caption><solution>1</solution>")
    pipelines = {"rapid": RapidContext(captioner=cap, reasoner=FunctionEngine(lambda r: "\\boxed{1}"))}
    body = {"model": "rapid", "messages": user_message("Q?", url)}
    with running(pipelines, ServeConfig(allow_remote_images=True)) as server:
        refused = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)
    assert refused.status_code == 400 and seen == []  # refused before any connection
    error = refused.json()["error"]
    assert error["param"] == PARAM and error["code"] == "image_url_refused"
    assert "refers to a loopback address" in error["message"] and "--remote-image-allow" in error["message"]
    with running(pipelines, ServeConfig(allow_remote_images=True, remote_image_allow=("127.0.0.1",))) as server:
        allowed = httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)
    assert allowed.status_code == 200 and seen == [("/small.png", f"127.0.0.1:{internal.server_address[1]}")]


@pytest.mark.parametrize(
    "host, kind",
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
        ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
        ("10.0.0.7", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_internal_addresses_are_refused_before_connecting(host, kind):
    error = refusal(f"http://{host}:9/image.png")
    article = "an" if kind[0] in "aeiou" else "a"
    assert f"the image URL refers to {article} {kind} address" in error.message


def test_a_host_name_that_resolves_to_loopback_is_refused(internal, seen):
    error = refusal(f"http://localhost:{internal.server_address[1]}/small.png")
    assert "names host 'localhost', which resolves to a loopback address" in error.message and seen == []
    # named in the allow-list, the host is fetched whatever it resolves to
    assert fetch(f"http://localhost:{internal.server_address[1]}/small.png", "localhost") == png_bytes((32, 32))


def test_the_allow_list_takes_addresses_and_networks(internal, seen):
    url = f"http://127.0.0.1:{internal.server_address[1]}/small.png"
    assert fetch(url, "127.0.0.1") == fetch(url, "127.0.0.0/8") == png_bytes((32, 32))
    assert "loopback" in refusal(url, "10.0.0.0/8", "images.internal").message


def test_every_redirect_is_checked_again(internal, seen):
    port = internal.server_address[1]
    base = f"http://127.0.0.1:{port}"
    assert fetch(f"{base}/to?url=/small.png", "127.0.0.1") == png_bytes((32, 32))  # an allowed hop is followed
    error = refusal(f"{base}/to?url=http://169.254.169.254/latest/meta-data/", "127.0.0.1")
    assert "redirects to a URL that refers to a link-local address" in error.message
    error = refusal(f"{base}/to?url=http://127.0.0.2:{port}/small.png", "127.0.0.1")  # loopback, not allowed
    assert "redirects to a URL that refers to a loopback address" in error.message
    assert [path for path, _ in seen] == [  # the refused targets were never asked
        "/to?url=/small.png",
        "/small.png",
        "/to?url=http://169.254.169.254/latest/meta-data/",
        f"/to?url=http://127.0.0.2:{port}/small.png",
    ]
    with pytest.raises(APIError, match="more than 3 redirects"):
        fetch(f"{base}/loop", "127.0.0.1")


def test_the_connection_goes_to_the_checked_address_with_the_urls_host_header(internal, seen, monkeypatch):
    port = internal.server_address[1]
    answers = {"images.example": ["127.0.0.1"], "mixed.example": ["93.184.215.14", "127.0.0.1"]}

    async def resolve(host, port):
        return answers[host]

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    url = f"http://images.example:{port}/small.png"
    assert "names host 'images.example', which resolves to a loopback address" in refusal(url).message
    assert fetch(url, "127.0.0.1") == png_bytes((32, 32))  # the address is allowed, not the name
    assert seen == [("/small.png", f"images.example:{port}")]
    # one public answer does not make the host safe: every address it resolves to is checked
    assert "resolves to a loopback address" in refusal(f"http://mixed.example:{port}/small.png").message


class _Misdirected(httpcore.AsyncNetworkBackend):
    """Connects to the loopback image host whatever address it is asked for (as a hijacked route would)."""

    def __init__(self, port: int) -> None:
        self.port, self.inner = port, httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return await self.inner.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds):
        await self.inner.sleep(seconds)


def test_the_address_a_connection_reached_is_checked_too(internal, seen, monkeypatch):
    async def resolve(host, port):
        return ["93.184.215.14"]  # public: the first check passes

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    backend = GuardedBackend(AddressPolicy(), inner=_Misdirected(internal.server_address[1]))
    error = refusal("http://images.example/small.png", backend=backend)
    assert "names host 'images.example', which resolves to a loopback address" in error.message and seen == []


@pytest.mark.parametrize(
    "address, kind",
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fe80::1", "link-local"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
    ],
)
def test_address_kinds(address, kind):
    assert address_kind(ip_address(address)) == kind
