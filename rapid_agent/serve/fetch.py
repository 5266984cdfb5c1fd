"""Fetching the image a client names by URL without letting the client reach what only the server can (SSRF).

A server that fetches any URL it is sent can be made to read a cloud metadata endpoint (169.254.169.254), an admin
port on loopback or a service on the private network, and hand back what it found. So every connection goes through
`GuardedBackend`, an httpcore network backend: it resolves the host itself, refuses the host when any of its
addresses is loopback, private, link-local, multicast, unspecified or otherwise not public (IPv4, IPv6, and IPv4
carried inside IPv6) unless the server's allow-list names the host or a network holding the address, and then
connects to the address it checked, so a second DNS answer cannot swap it. TLS still verifies (and sends SNI for)
the name in the URL, and the Host header is the URL's. Redirects are followed here, one hop at a time, each checked
the same way; the address each response actually came from is checked once more. No proxy from the environment
is used: through a proxy, the address checked would be the proxy's, not the image host's.

This departs from a plain `httpx.get(url, follow_redirects=True)` in exactly those checks: httpx resolves names
inside its connection pool, where no check can reach the address it connects to.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

import httpcore
import httpx

from rapid_agent.serve.config import ServeConfig, split_allow_list
from rapid_agent.serve.errors import APIError, bad_request

#: redirects followed for one image
MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}
#: the well-known NAT64 prefix: an IPv6 address in it reaches the IPv4 address in its last 32 bits
_NAT64 = ip_network("64:ff9b::/96")
#: httpcore's errors for a fetch that failed on the way (it has no common base class for them)
_FETCH_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
#: what the refusal says the server never fetches from
_REFUSED = "loopback, private, link-local, multicast, unspecified or reserved addresses"


class RefusedAddress(Exception):
    """A host the server may not reach: `kind` says which sort of address it is (or resolves to)."""

    def __init__(self, host: str, kind: str) -> None:
        self.host, self.kind = host, kind
        article = "an" if kind[0] in "aeiou" else "a"
        where = "refers to" if _is_address(host) else f"names host {host!r}, which resolves to"
        super().__init__(f"{where} {article} {kind} address")


def address_kind(address: IPv4Address | IPv6Address) -> str | None:
    """What makes `address` internal ('loopback', 'private', 'link-local', ...), or None for a public address. An
    IPv4 address inside IPv6 (mapped, 6to4, NAT64) is judged as the IPv4 address it reaches."""
    if isinstance(address, IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return address_kind(inner)
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"  # 100.64.0.0/10 (carrier NAT), documentation ranges, ...


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts the server may fetch from: every public address, and the internal ones the allow-list names
    (by host name, or by a network holding the address)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        hosts, networks = split_allow_list(tuple(entries))
        return cls(hosts, networks)

    def check(self, host: str, address: Any) -> None:
        """Raise RefusedAddress unless `host` (as the URL names it) may be reached at `address`."""
        host = _host_key(host)
        if host in self.hosts:
            return
        try:
            ip = ip_address(str(address).split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
        except ValueError:
            raise RefusedAddress(host, "unknown") from None
        mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
        if any(ip in net or (mapped is not None and mapped in net) for net in self.networks):
            return
        kind = address_kind(ip)
        if kind is not None:
            raise RefusedAddress(host, kind)

    def check_peer(self, host: str, stream: Any) -> None:
        """Check the address a connection reached (`server_addr` of an httpcore network stream)."""
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        self.check(host, peer[0] if peer else None)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only where `policy` allows: it resolves the host, checks every
    address, connects to a checked one (`inner` makes the connection) and checks the peer it reached."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        for address in addresses:
            self.policy.check(host, address)
        error: Exception = httpcore.ConnectError(f"{host!r} resolves to no address")
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            try:
                self.policy.check_peer(host, stream)
            except RefusedAddress:
                await stream.aclose()
                raise
            return stream
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise RefusedAddress(path, "unix-socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def fetch_image(url: str, param: str, config: ServeConfig, *, backend: GuardedBackend | None = None) -> bytes:
    """GET `url`, at most `remote_image_max_bytes`, within `remote_image_timeout_s` for the whole transfer, following
    at most MAX_REDIRECTS redirects, from allowed addresses only (`backend` makes the connections; by default a
    `GuardedBackend` for the config's allow-list). Raises APIError (400, or 413) naming `param`."""
    limit, timeout = config.remote_image_max_bytes, config.remote_image_timeout_s
    policy = AddressPolicy.from_entries(config.remote_image_allow)
    extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}

    async def get_one(pool: httpcore.AsyncConnectionPool, target: httpx.URL, hop: int) -> bytes | httpx.URL:
        """The image at `target`, or where it redirects to."""
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise bad_request(f"{param}: the image URL redirects to a URL that is not http(s)", param=param)
        request = httpcore.Request(
            "GET",
            httpcore.URL(scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path),
            headers=[(b"Host", target.netloc), (b"Accept", b"image/*"), (b"User-Agent", b"rapid-agent")],
            extensions=extensions,
        )
        try:
            response = await pool.handle_async_request(request)
        except RefusedAddress as exc:
            raise _refused(param, exc, redirected=hop > 0) from None
        try:
            try:  # the second check: the address this response came from
                policy.check_peer(target.raw_host.decode("ascii"), response.extensions.get("network_stream"))
            except RefusedAddress as exc:
                raise _refused(param, exc, redirected=hop > 0) from None
            location = _header(response.headers, b"location")
            if response.status in _REDIRECTS and location:
                return target.join(location.decode("latin-1"))
            if response.status != 200:
                raise bad_request(f"{param}: fetching the image gave HTTP {response.status}", param=param)
            declared = (_header(response.headers, b"content-length") or b"").decode("latin-1")
            if declared.isdigit() and int(declared) > limit:
                raise _too_big(param, limit)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > limit:
                    raise _too_big(param, limit)
            return bytes(body)
        finally:
            await response.aclose()

    async def get() -> bytes:
        target = httpx.URL(url)
        async with httpcore.AsyncConnectionPool(network_backend=backend or GuardedBackend(policy), retries=0) as pool:
            for hop in range(MAX_REDIRECTS + 1):
                got = await get_one(pool, target, hop)
                if isinstance(got, bytes):
                    return got
                target = got
        raise bad_request(f"{param}: fetching the image took more than {MAX_REDIRECTS} redirects", param=param)

    try:
        return await asyncio.wait_for(get(), timeout)
    except asyncio.TimeoutError:
        raise bad_request(f"{param}: fetching the image took longer than {timeout:g}s", param=param) from None
    except (*_FETCH_ERRORS, httpx.InvalidURL) as exc:
        raise bad_request(f"{param}: could not fetch the image ({type(exc).__name__})", param=param) from None


def _refused(param: str, exc: RefusedAddress, *, redirected: bool) -> APIError:
    subject = "the image URL redirects to a URL that" if redirected else "the image URL"
    message = f"{param}: {subject} {exc}; this server fetches no image from {_REFUSED} unless its allow-list "
    return bad_request(message + "(--remote-image-allow) names them", param=param, code="image_url_refused")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _host_key(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def _is_address(host: str) -> bool:
    try:
        ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _too_big(param: str, limit: int) -> APIError:
    return APIError(
        413, f"{param}: the remote image is larger than {limit:,} bytes", param=param, code="image_too_large"
    )
