"""The project's fixture format: recorded exchanges, byte-exact, one file per session.

A fixture file is JSON (`format: "llm-gateway/fixture@1"`):

    {"format": "llm-gateway/fixture@1",
     "description": "what the session is",
     "source": {"origin": "...", "path": "...", "commit": "...", "license": "...", "note": "..."},
     "exchanges": [
       {"request": {"method": "POST", "path": "/v1/messages?beta=true",
                    "headers": [["content-type", "application/json"], ...],
                    "body": {"text": "..."} | {"base64": "..."}},
        "response": {"status": 200, "headers": [[...]],
                     "chunks": [{"at": 0.0, "text": "..."} | {"at": 0.012, "base64": "..."}]}}]}

A WebSocket exchange (the request upgraded: status 101, no chunks) has its messages too, in the order they were
relayed, each with its direction and opcode (RFC 6455: 1 text, 2 binary, 8 close, 9 ping, 10 pong):

        "messages": [{"at": 0.004, "from": "client", "opcode": 1, "text": "{\"type\":\"response.create\",...}"},
                     {"at": 0.131, "from": "server", "opcode": 1, "text": "..."}, ...]

Bodies are text when they are valid UTF-8 and base64 otherwise, so each byte comes back exactly. `at` is the
chunk's (or message's) offset in seconds from the response head. Header lists keep order and repeated fields.
Credentials are replaced by `REDACTED` when a fixture is written (see `SECRET_HEADERS`).

A file is written whole to a temporary name and then renamed over the old one, so a crash never leaves half a
file behind. A file cut short anyway (written by something else, or copied while being written) loads up to its
last complete exchange, with a warning that says how many were kept.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("llm_gateway.recordings")

FORMAT = "llm-gateway/fixture@1"

#: Header fields that carry credentials: never written to a fixture, never put on a span.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "chatgpt-account-id",
    }
)
REDACTED = "REDACTED"


@dataclass(slots=True)
class Chunk:
    at: float  # seconds after the response head
    data: bytes


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class RecordedResponse:
    status: int
    headers: list[tuple[str, str]]
    chunks: list[Chunk]

    @property
    def body(self) -> bytes:
        return b"".join(c.data for c in self.chunks)


@dataclass(slots=True)
class RecordedMessage:
    """A WebSocket message (whole: fragments joined), as relayed."""

    at: float  # seconds after the response head (the 101)
    from_client: bool
    opcode: int
    data: bytes  # a close message's: its code (2 bytes) and reason, empty when it gave no code


@dataclass(slots=True)
class Exchange:
    request: RecordedRequest
    response: RecordedResponse
    #: the messages of a WebSocket exchange; None for an HTTP exchange
    messages: list[RecordedMessage] | None = None

    @property
    def websocket(self) -> bool:
        return self.messages is not None


@dataclass(slots=True)
class Fixture:
    exchanges: list[Exchange]
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # the file's stem when loaded


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def scrub(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers]


def _body_to_json(data: bytes) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _body_from_json(doc: dict[str, str]) -> bytes:
    if "base64" in doc:
        return base64.b64decode(doc["base64"])
    return doc.get("text", "").encode("utf-8")


def to_json(fixture: Fixture) -> bytes:
    doc = {
        "format": FORMAT,
        "description": fixture.description,
        "source": fixture.source,
        "exchanges": [_exchange_to_json(ex) for ex in fixture.exchanges],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _exchange_to_json(ex: Exchange) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "request": {
            "method": ex.request.method,
            "path": ex.request.path,
            "headers": [list(h) for h in scrub(ex.request.headers)],
            "body": _body_to_json(ex.request.body),
        },
        "response": {
            "status": ex.response.status,
            "headers": [list(h) for h in scrub(ex.response.headers)],
            "chunks": [{"at": round(c.at, 6), **_body_to_json(c.data)} for c in ex.response.chunks],
        },
    }
    if ex.messages is not None:
        doc["messages"] = [{"at": round(m.at, 6), "from": "client" if m.from_client else "server",
                            "opcode": m.opcode, **_body_to_json(m.data)} for m in ex.messages]
    return doc


def from_json(data: bytes, name: str = "", label: str = "") -> Fixture:
    """`name`: the fixture's; `label`: what messages call it (its path), by default its name."""
    label = label or name or "fixture"
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        doc = _complete_part(data)
        if doc.get("format") != FORMAT or not doc.get("exchanges"):
            raise ValueError(f"{label}: not an {FORMAT} document with a complete exchange ({exc})") from None
        log.warning("llm-gateway: %s is cut short (%d bytes, %s); loaded its first %d complete exchange(s)",
                    label, len(data), exc, len(doc["exchanges"]))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{label}: not an {FORMAT} document (format={doc.get('format')!r})")
    exchanges = []
    for ex in doc["exchanges"]:
        req, resp = ex["request"], ex["response"]
        exchanges.append(
            Exchange(
                RecordedRequest(
                    req["method"], req["path"], [tuple(h) for h in req["headers"]], _body_from_json(req["body"])
                ),
                RecordedResponse(
                    resp["status"],
                    [tuple(h) for h in resp["headers"]],
                    [Chunk(c["at"], _body_from_json(c)) for c in resp["chunks"]],
                ),
                None if "messages" not in ex else [
                    RecordedMessage(m["at"], m["from"] == "client", m["opcode"], _body_from_json(m))
                    for m in ex["messages"]],
            )
        )
    return Fixture(exchanges, doc.get("description", ""), doc.get("source", {}), name)


_SPACE = re.compile(r"[ \t\n\r]*")


def _complete_part(data: bytes) -> dict[str, Any]:
    """The members of a fixture document cut short, as far as they are complete, with `exchanges` holding the
    exchanges that are whole. Each member and each exchange is an object or a string, which JSON cannot end
    early, so a cut one fails to decode instead of coming back shorter."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # cut inside a character, or damaged there: keep what comes before
        text = data[: exc.start].decode("utf-8")
    decode = json.JSONDecoder().raw_decode
    doc: dict[str, Any] = {}
    pos = _SPACE.match(text).end()
    if not text.startswith("{", pos):
        return doc
    try:
        while True:
            key, pos = decode(text, _SPACE.match(text, pos + 1).end())
            pos = _SPACE.match(text, pos).end()
            if not isinstance(key, str) or not text.startswith(":", pos):
                break
            pos = _SPACE.match(text, pos + 1).end()
            if key == "exchanges" and text.startswith("[", pos):
                doc[key] = exchanges = []
                pos = _SPACE.match(text, pos + 1).end()
                while not text.startswith("]", pos):
                    exchange, pos = decode(text, pos)
                    exchanges.append(exchange)
                    pos = _SPACE.match(text, pos).end()
                    if text.startswith(",", pos):
                        pos = _SPACE.match(text, pos + 1).end()
                pos += 1
            else:
                doc[key], pos = decode(text, pos)
            pos = _SPACE.match(text, pos).end()
            if not text.startswith(",", pos):
                break
    except ValueError:  # the cut
        pass
    return doc


def load(path: str | Path) -> Fixture:
    path = Path(path)
    return from_json(path.read_bytes(), path.stem, str(path))


def save(fixture: Fixture, path: str | Path) -> None:
    """Write `fixture` to `path` in one step: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")  # not *.json: no reader takes it
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(to_json(fixture))
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def fixture_files(root: str | Path) -> Iterator[Path]:
    yield from sorted(Path(root).rglob("*.json"))


# ---------------------------------------------------------------------------------------------------------
# Splitting a whole recorded body into the chunks a live server would have sent


_SSE_EVENT_END = re.compile(rb"(?:\r\n|\r|\n)(?:\r\n|\r|\n)")


def split_body(data: bytes, content_type: str | None) -> list[bytes]:
    """One chunk per SSE event, AWS event-stream frame or NDJSON line; whole otherwise."""
    ctype = (content_type or "").lower()
    if "text/event-stream" in ctype:
        return _split_at(data, [m.end() for m in _SSE_EVENT_END.finditer(data)])
    if "vnd.amazon.eventstream" in ctype:
        return _split_frames(data)
    if "ndjson" in ctype or "jsonl" in ctype:
        return _split_at(data, [i + 1 for i in range(len(data)) if data[i] == 0x0A])
    return [data] if data else []


def _split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for cut in cuts:
        if cut > start:
            chunks.append(data[start:cut])
            start = cut
    if start < len(data):
        chunks.append(data[start:])
    return chunks


def _split_frames(data: bytes) -> list[bytes]:
    cuts, pos = [], 0
    while pos + 4 <= len(data):
        pos += int.from_bytes(data[pos : pos + 4], "big") or len(data)
        cuts.append(min(pos, len(data)))
    return _split_at(data, cuts)
