"""HTTP/1.1 message pieces the client writes and reads. Sans-IO: text and bytes in, bytes and text out."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

#: methods a request may be sent again for when a kept-alive connection closed before answering (RFC 9110
#: section 9.2.2): a model call (POST) never is
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: methods whose request always carries Content-Length, even 0 (as aiohttp's client wrote them)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Fields never copied from a received message into one the gateway sends (relayed, replayed or played back):
#: the RFC 9110 section 7.6.1 hop-by-hop fields, the ones the sender frames anew (Host, Content-Length), and
#: Expect (the body was already read).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
#: Connection values (and tokens) that name no field to drop with it (Keep-Alive is hop-by-hop anyway)
PLAIN_CONNECTION = frozenset({b"close", b"keep-alive", b""})
#: header fields as received: (name, value) bytes pairs, in order
Fields = Sequence[tuple[bytes, bytes]]


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


@functools.lru_cache(maxsize=256)
def host_and_port(url: str) -> tuple[str | None, int]:
    """The host of an http(s) URL and its port, the scheme's when it names none (for `server.address` and
    `server.port`): agents call the same few URLs, each parsed once."""
    parts = urlsplit(url)
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def request_head(method: str, target: Target, fields: Fields, body: bytes | None) -> bytes:
    """The request line and header block: Host first, then `fields` in order (the client's end-to-end fields as it
    sent them, repeats kept), the URL's Basic credentials unless the client sent an Authorization of its own, then
    Content-Length when there is a body or the method always has one."""
    parts = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n".encode()]
    for name, value in fields:
        parts += (name, b": ", value, b"\r\n")
    if target.authorization and not any(name.lower() == b"authorization" for name, _ in fields):
        parts.append(f"Authorization: {target.authorization}\r\n".encode())
    if body or method in BODY_METHODS:
        parts.append(b"Content-Length: %d\r\n" % len(body or b""))
    parts.append(b"\r\n")
    return b"".join(parts)


def end_to_end(fields: Fields, drop: frozenset[str] = HOP_BY_HOP) -> list[tuple[bytes, bytes]]:
    """The fields of a message that go on to the next hop, as received and in order: all but those named in `drop`
    (lowercase) and those its Connection field lists (hop-by-hop for this message alone)."""
    lowered = [(HEADER_NAMES.get(name) or header_name(name))[1] for name, _ in fields]
    if "connection" in lowered:
        listed = {token.strip().lower().decode("latin-1") for (_, value), name in zip(fields, lowered, strict=True)
                  if name == "connection" for token in value.split(b",")}
        drop = drop | listed
    return [field for field, name in zip(fields, lowered, strict=True) if name not in drop]


def header_text(raw: bytes) -> str:
    """A header name or value as text that encodes back to the same bytes as UTF-8 where it was UTF-8; bytes that
    are not UTF-8 pass as Latin-1 text (a Latin-1 reading of UTF-8 would double-encode every non-ASCII byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def text_headers(fields: Fields) -> CIMultiDictProxy[str]:
    """Header fields as text, read the way the relay's parsers read them (a value that is not UTF-8 keeps its
    bytes as surrogates)."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in fields:
        headers.add((HEADER_NAMES.get(name) or header_name(name))[0], value.decode("utf-8", "surrogateescape"))
    return CIMultiDictProxy(headers)


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
