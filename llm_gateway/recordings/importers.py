"""Other projects' recordings as llm-gateway fixtures: vcrpy cassettes (YAML), including the pydantic-ai flavour
whose request body is `parsed_body`, and the pieces every converter builds a fixture from.

Recorded bodies without timing become one chunk per SSE event, event-stream frame or NDJSON line, all at
offset 0. Where a recording lacks a response `content-type`, one is inferred from the body and the fixture's
source notes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from llm_gateway.recordings.fixtures import (
    Chunk,
    Exchange,
    Fixture,
    RecordedRequest,
    RecordedResponse,
    header,
    split_body,
)


def path_of(url: str) -> str:
    """The path and query of a recorded URL: what a fixture's request keeps."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def as_bytes(value: Any) -> bytes:
    """A recorded body as bytes; a structured one (parsed JSON) is serialized."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


def header_pairs(headers: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A header mapping (a value may be a list of repeated fields) as ordered pairs."""
    pairs: list[tuple[str, str]] = []
    for name, value in (headers or {}).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(name), str(item)))
    return pairs


def _infer_content_type(body: bytes) -> str:
    head = body.lstrip()[:64]
    if head.startswith((b"event:", b"data:", b":")):
        return "text/event-stream"
    if len(body) >= 12 and int.from_bytes(body[:4], "big") <= len(body) and not head.startswith((b"{", b"[")):
        return "application/vnd.amazon.eventstream"
    return "application/json"


def recorded_response(status: int, headers: list[tuple[str, str]], body: bytes, notes: list[str]) -> RecordedResponse:
    """A whole recorded body cut into the chunks a live server would have sent; what was guessed goes to `notes`."""
    ctype = header(headers, "content-type")
    if ctype is None and body:
        ctype = _infer_content_type(body)
        headers = [*headers, ("content-type", ctype)]
        notes.append(f"content-type {ctype} added: the recording has no response headers")
    # A compressed body is kept whole: its compressed bytes cannot be cut at event boundaries.
    chunks = [body] if header(headers, "content-encoding") else split_body(body, ctype)
    return RecordedResponse(status, headers, [Chunk(0.0, c) for c in chunks])


def converted(exchanges: list[Exchange], source: dict[str, Any], notes: list[str], name: str) -> Fixture:
    """The fixture of a converted recording; the conversion's notes go into its source."""
    if notes:
        source = {**source, "conversion_notes": sorted(set(notes))}
    return Fixture(exchanges, source.get("description", ""), source, name)


def import_vcr(path: str | Path, source: dict[str, Any] | None = None) -> Fixture:
    import yaml

    path = Path(path)
    doc = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    notes: list[str] = []
    exchanges = []
    for interaction in doc.get("interactions", []):
        req, resp = interaction["request"], interaction["response"]
        if "parsed_body" in req:
            notes.append("request body re-serialized from the pydantic-ai parsed_body (not the original bytes)")
            body = orjson.dumps(req["parsed_body"])
        else:
            body = as_bytes(req.get("body"))
        request = RecordedRequest(req["method"], path_of(req["uri"]), header_pairs(req.get("headers")), body)
        status = resp["status"]["code"] if isinstance(resp.get("status"), dict) else int(resp.get("status", 200))
        resp_body = resp.get("body") or {}
        raw = resp_body.get("string") if "string" in resp_body else resp_body.get("parsed_body")
        exchanges.append(Exchange(request, recorded_response(status, header_pairs(resp.get("headers")),
                                                             as_bytes(raw), notes)))
    return converted(exchanges, {"format": "vcrpy cassette", **(source or {})}, notes, path.stem)
