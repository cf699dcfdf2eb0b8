"""The PROXY protocol header parser: v1 and v2, whole, in pieces, malformed, oversize."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from pydantic import ValidationError

from shared.runtime.proxy_protocol import (
    V1_MAX_BYTES,
    V2_MAX_BYTES,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)
from worker_server.settings import WorkerServerSettings

REQUEST = b"GET / HTTP/1.1\r\n"


def v2(command: int = 0x21, family: int = 0x11, addresses: bytes = b"", tlvs: bytes = b"") -> bytes:
    body = addresses + tlvs
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(body)) + body


def inet(source: str, source_port: int, destination: str = "10.0.0.1", port: int = 8002) -> bytes:
    src, dst = ipaddress.ip_address(source).packed, ipaddress.ip_address(destination).packed
    return src + dst + struct.pack("!HH", source_port, port)


@pytest.mark.parametrize(
    ("line", "source"),
    [
        (b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 8002\r\n", ("198.51.100.7", 40000)),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 8002\r\n", ("2001:db8::7", 65535)),
        (b"PROXY UNKNOWN\r\n", None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    ],
)
def test_v1_names_the_client_and_says_where_the_request_starts(
    line: bytes, source: tuple[str, int] | None
) -> None:
    assert parse_proxy_header(line + REQUEST) == ProxyHeader(source, len(line))


def test_v1_longest_headers_are_accepted() -> None:
    six = b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    tcp6 = b"PROXY TCP6 " + six + b" " + six + b" 65535 65535\r\n"
    assert parse_proxy_header(tcp6) == ProxyHeader(
        (str(ipaddress.ip_address(six.decode())), 65535), len(tcp6)
    )
    unknown = b"PROXY UNKNOWN " + six + b" " + six + b" 65535 65535\r\n"
    assert len(unknown) == V1_MAX_BYTES  # the specification's longest
    assert parse_proxy_header(unknown) == ProxyHeader(None, V1_MAX_BYTES)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40000\r\n",  # a field missing
        b"PROXY TCP4 198.51.100.7  10.0.0.1 40000 8002\r\n",  # two spaces
        b"PROXY TCP5 198.51.100.7 10.0.0.1 40000 8002\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 40000 8002\r\n",  # family and address disagree
        b"PROXY TCP6 198.51.100.7 2001:db8::1 40000 8002\r\n",
        b"PROXY TCP4 198.51.100.300 10.0.0.1 40000 8002\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 65536 8002\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 040000 8002\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 -1 8002\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 x\r\n",
        b"PROXY TCP4 198.51.100.\xc37 10.0.0.1 40000 8002\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a client that came straight here
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"proxy TCP4 198.51.100.7 10.0.0.1 40000 8002\r\n",
    ],
)
def test_v1_malformed_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(line)


def test_v1_without_an_end_within_its_bound_is_refused() -> None:
    assert parse_proxy_header(b"PROXY TCP4 " + b"1" * (V1_MAX_BYTES - 12)) is None
    with pytest.raises(ProxyHeaderError, match="longer than"):
        parse_proxy_header(b"PROXY TCP4 " + b"1" * (V1_MAX_BYTES - 11))


def test_v2_names_the_client_of_ipv4_and_ipv6() -> None:
    four = v2(addresses=inet("198.51.100.7", 40000))
    assert parse_proxy_header(four + REQUEST) == ProxyHeader(("198.51.100.7", 40000), len(four))
    six = v2(family=0x21, addresses=inet("2001:db8::7", 40001, "2001:db8::1"))
    assert parse_proxy_header(six) == ProxyHeader(("2001:db8::7", 40001), len(six))


def test_v2_skips_tlvs() -> None:
    # An AWS NLB's VPC endpoint id (type 0xEA), as it sends it after the addresses.
    tlv = b"\xea" + struct.pack("!H", 23) + b"\x01vpce-0123456789abcdef"
    header = v2(addresses=inet("198.51.100.7", 40000), tlvs=tlv)
    assert parse_proxy_header(header + REQUEST) == ProxyHeader(("198.51.100.7", 40000), len(header))


@pytest.mark.parametrize(
    "header",
    [
        v2(command=0x20, addresses=inet("198.51.100.7", 40000)),  # LOCAL: the balancer's check
        v2(family=0x00),  # UNSPEC
        v2(family=0x31, addresses=b"\0" * 216),  # UNIX
    ],
)
def test_v2_without_a_client_keeps_the_peer(header: bytes) -> None:
    assert parse_proxy_header(header) == ProxyHeader(None, len(header))


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (v2(command=0x22, addresses=inet("198.51.100.7", 1)), "command"),
        (v2(command=0x11, addresses=inet("198.51.100.7", 1)), "command"),  # version 1
        (v2(family=0x12, addresses=inet("198.51.100.7", 1)), "stream"),  # UDP
        (v2(family=0x41, addresses=inet("198.51.100.7", 1)), "family"),
        (v2(addresses=inet("198.51.100.7", 1)[:8]), "cannot hold"),
        (v2(family=0x21, addresses=inet("198.51.100.7", 1)), "cannot hold"),
        (v2(tlvs=b"\0" * (V2_MAX_BYTES - 15)), "more than"),
    ],
)
def test_v2_malformed_is_refused(header: bytes, error: str) -> None:
    with pytest.raises(ProxyHeaderError, match=error):
        parse_proxy_header(header)


def test_v2_oversize_is_refused_before_it_arrives() -> None:
    # Only the fixed part: the length alone says it is too long, nothing is buffered.
    fixed = V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, 0xFFFF)
    with pytest.raises(ProxyHeaderError, match="more than"):
        parse_proxy_header(fixed)


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 8002\r\n",
        v2(addresses=inet("198.51.100.7", 40000), tlvs=b"\x04\x00\x01x"),
    ],
)
def test_truncated_header_waits_for_the_rest(header: bytes) -> None:
    for end in range(len(header)):
        assert parse_proxy_header(header[:end]) is None, header[:end]
    assert parse_proxy_header(header) == ProxyHeader(("198.51.100.7", 40000), len(header))


def test_proxy_protocol_settings_fail_fast() -> None:
    with pytest.raises(ValidationError, match="proxy_protocol needs trusted_proxies"):
        WorkerServerSettings(proxy_protocol=True)
    with pytest.raises(ValidationError, match="cannot be used with tls_cert_file"):
        WorkerServerSettings(
            proxy_protocol=True,
            trusted_proxies="10.0.0.0/8",
            tls_cert_file="cert.pem",
            tls_key_file="key.pem",
        )
    with pytest.raises(ValidationError, match="trusted_proxies"):
        WorkerServerSettings(trusted_proxies="10.0.0.1/8")  # host bits: a typo, refused
    settings = WorkerServerSettings(trusted_proxies=" 10.0.0.0/8, ::1 ,")
    assert [str(network) for network in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
