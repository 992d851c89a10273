"""The CONNECT request head, sans I/O: `read_connect(buffer)` -> the target and where the tunnel's bytes start.

Only the first request of a connection is read here (`ProxyServer` looks at it before aiohttp does); every other
request on the port is aiohttp's. The head is bounded: a client that sends more than `MAX_HEAD` bytes without
ending it gets a 400, like any malformed CONNECT.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: the start of a connection that the proxy takes over (anything else goes to aiohttp's parser)
CONNECT = b"CONNECT "
#: largest CONNECT head accepted (request line and header fields), as h11 bounds an incomplete event
MAX_HEAD = 16 * 1024

_VERSION = re.compile(rb"HTTP/1\.[01]")
_FIELD_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REG_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


class BadConnect(ValueError):
    """The CONNECT head is malformed; the message says how (it is sent back in the 400)."""


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # lowercase DNS name or IP address, without IPv6 brackets
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def origin(self, scheme: str) -> str:
        """`https://host` (the scheme's default port left out) or `https://host:port`."""
        default = 443 if scheme == "https" else 80
        suffix = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{self.authority}{suffix}"


def starts_connect(data: bytes) -> bool | None:
    """Whether a connection that began with `data` is a CONNECT; None while `data` is too short to tell."""
    if len(data) >= len(CONNECT):
        return data.startswith(CONNECT)
    return None if CONNECT.startswith(data) else False


def read_connect(buffer: bytes) -> tuple[Target, int] | None:
    """The target of the CONNECT head at the start of `buffer` and the offset where the head ends (the client's
    tunnelled bytes start there); None when the head is not complete yet. Raises BadConnect."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise BadConnect(f"the CONNECT request head is longer than {MAX_HEAD} bytes")
        return None
    if end > MAX_HEAD:
        raise BadConnect(f"the CONNECT request head is longer than {MAX_HEAD} bytes")
    request_line, *fields = buffer[:end].split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"CONNECT" or not _VERSION.fullmatch(parts[2]):
        raise BadConnect("expected a request line like: CONNECT host:443 HTTP/1.1")
    for field in fields:
        name, colon, _ = field.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise BadConnect("a header field of the CONNECT request is malformed")
    return parse_authority(parts[1].decode("ascii", "replace")), end + 4


def parse_authority(authority: str) -> Target:
    """`host:port` (authority-form, RFC 9110 section 9.3.6: the port is required) -> Target. Raises BadConnect."""
    host, sep, port = authority.rpartition(":")
    if not sep or not port.isdigit() or not port.isascii() or not 0 < int(port) < 65536:
        raise BadConnect(f"CONNECT needs host:port with a port from 1 to 65535, got {authority!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            return Target(str(ipaddress.IPv6Address(host[1:-1])), int(port))
        except ValueError:
            raise BadConnect(f"{host!r} is not an IPv6 address") from None
    if not _REG_NAME.fullmatch(host) or ".." in host:
        raise BadConnect(f"{host!r} is not a host name or an IPv4 address")
    return Target(host.lower(), int(port))
