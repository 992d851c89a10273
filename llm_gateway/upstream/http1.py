"""HTTP/1.1 message pieces the client writes and reads. Sans-IO: text and bytes in, bytes and text out."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

#: methods a request may be sent again for when a kept-alive connection closed before answering (RFC 9110
#: section 9.2.2): a model call (POST) never is
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: methods whose request always carries Content-Length, even 0 (as aiohttp's client wrote them)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Target(NamedTuple):
    """Where a request goes: the connection's origin and the request line's target."""

    scheme: str
    host: str
    port: int
    host_header: str  # the Host field's value: the port only when it is not the scheme's default
    path: str  # origin-form (path and query), exactly as in the URL
    #: Basic credentials from the URL's user info (`http://user:pass@host`), sent when the client sent none
    authorization: str | None = None


def target_of(url: str) -> Target:
    """`url` (absolute, http or https) as a request target; raises ValueError for anything else."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port is None or not host:
        raise ValueError(f"not an http:// or https:// URL with a host: {url!r}")
    port = parts.port or default_port
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Target(scheme, host, port, shown if port == default_port else f"{shown}:{port}", path, authorization)


def request_head(method: str, target: Target, headers: Iterable[tuple[str, str]], body: bytes | None) -> bytes:
    """The request line and header block: Host first, then `headers` in order (the client's end-to-end fields,
    repeats kept), the URL's Basic credentials unless the client sent an Authorization of its own, then
    Content-Length when there is a body or the method always has one."""
    lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    if target.authorization and not any(line[:14].lower() == "authorization:" for line in lines[1:]):
        lines.append(f"Authorization: {target.authorization}\r\n")
    if body or method in BODY_METHODS:
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    # aiohttp's client wrote header text as UTF-8 too, so a value read from UTF-8 bytes goes on as those bytes
    return "".join(lines).encode()


def header_text(raw: bytes) -> str:
    """A header name or value as text that encodes back to the same bytes as UTF-8 where it was UTF-8; bytes that
    are not UTF-8 pass as Latin-1 text (a Latin-1 reading of UTF-8 would double-encode every non-ASCII byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# Header names as text and lowercased, by their bytes: clients and upstreams send the same few dozen names with every
# message (ASCII only: a name that is not is read by the caller's rules each time). Look here first, then call
# `header_name`, which fills it.
HEADER_NAMES: dict[bytes, tuple[str, str]] = {}
_NAMES_KEPT = 512


def header_name(raw: bytes, text: Callable[[bytes], str] = header_text) -> tuple[str, str]:
    """(name, lowercased name) of a raw header name, read with `text`."""
    name = text(raw)
    found = (name, name.lower())
    if raw.isascii():  # read the same by every reading (see relay.HeaderNotUTF8)
        if len(HEADER_NAMES) >= _NAMES_KEPT:
            HEADER_NAMES.clear()
        HEADER_NAMES[raw] = found
    return found
