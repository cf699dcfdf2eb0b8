"""The PROXY protocol header (HAProxy's, v1 text and v2 binary) a load balancer sends first.

An L4 load balancer (AWS NLB, HAProxy `send-proxy-v2`, ...) forwards bytes,
so the peer of our socket is the balancer; with the PROXY protocol it first
writes one header naming the client's address. The specification is
haproxy.org's `proxy-protocol.txt`. This module only reads that header;
`shared.runtime.proxied` decides whom to believe.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107  # the specification's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES = 16
# Addresses (at most 216 bytes) plus TLVs: AWS, GCP and Azure add an endpoint id,
# HAProxy a few TLS facts; no balancer sends kilobytes, and a peer that does is not one.
V2_MAX_BYTES = 4096

_V2_LOCAL, _V2_PROXY = 0x20, 0x21
_V2_UNSPEC, _V2_INET, _V2_INET6, _V2_UNIX = 0x0, 0x1, 0x2, 0x3
_V2_STREAM = 0x1
# Source, destination, source port, destination port.
_V2_ADDRESSES = {_V2_INET: struct.Struct("!4s4sHH"), _V2_INET6: struct.Struct("!16s16sHH")}


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY protocol header we accept."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: `source` is the client's (address, port), None to keep the peer's
    (a balancer's own health check: v1 UNKNOWN, v2 LOCAL, a family without an address)."""

    source: tuple[str, int] | None
    length: int  # bytes the header took; what follows is the client's


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`, or None while more bytes are needed.

    Raises ProxyHeaderError when `data` cannot begin a valid header.
    """
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data):
        return None  # a prefix of one of them: wait
    raise ProxyHeaderError("no PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(data) >= V1_MAX_BYTES:
            raise ProxyHeaderError(f"v1 header longer than {V1_MAX_BYTES} bytes")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    fields = line.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":  # the rest of the line is to be ignored
        return ProxyHeader(None, end + 2)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("v1 header is not 'PROXY TCP4|TCP6 src dst sport dport'")
    _, family, source, destination, source_port, destination_port = fields
    version = 4 if family == "TCP4" else 6
    client = _address(source, version)
    _address(destination, version)
    _port(destination_port)
    return ProxyHeader((client, _port(source_port)), end + 2)


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"v1 header: {text!r} is not an address") from None
    if address.version != version:
        raise ProxyHeaderError(f"v1 header: {text!r} is not an IPv{version} address")
    return str(address)


def _port(text: str) -> int:
    # Digits only, no sign, no leading zero (the specification's form).
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError(f"v1 header: {text!r} is not a port")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"v1 header: {text!r} is not a port")
    return port


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < V2_FIXED_BYTES:
        return None
    command, family_and_transport, length = struct.unpack_from("!BBH", data, 12)
    total = V2_FIXED_BYTES + length
    if total > V2_MAX_BYTES:
        raise ProxyHeaderError(f"v2 header of {total} bytes, more than {V2_MAX_BYTES}")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"v2 header: version/command byte {command:#04x}")
    if len(data) < total:
        return None
    family, transport = family_and_transport >> 4, family_and_transport & 0xF
    if command == _V2_LOCAL or family in (_V2_UNSPEC, _V2_UNIX):  # no client address
        return ProxyHeader(None, total)
    layout = _V2_ADDRESSES.get(family)
    if layout is None:
        raise ProxyHeaderError(f"v2 header: address family {family}")
    if transport != _V2_STREAM:
        raise ProxyHeaderError("v2 header: not a stream (TCP) connection")
    if length < layout.size:
        raise ProxyHeaderError(f"v2 header: {length} bytes cannot hold the addresses")
    source, _destination, source_port, _destination_port = layout.unpack_from(data, V2_FIXED_BYTES)
    return ProxyHeader((str(ipaddress.ip_address(source)), source_port), total)
