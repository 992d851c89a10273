"""Converters from other projects' recording formats into llm-gateway fixtures.

- vcrpy cassettes (YAML), including the pydantic-ai flavour whose request body is `parsed_body`;
- anthropic-sdk-python inline-snapshot JSON (a list of `{request, response}`);
- cc-core Kiro capture rows (`{method, url, reqHeaders, reqBody, resHeaders, resBody, ...}`).

Recorded bodies without timing become one chunk per SSE event, event-stream frame or NDJSON line, all at
offset 0. Where a recording lacks a response `content-type`, one is inferred from the body and the fixture's
source notes it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from llm_gateway.fixtures import (
    Chunk,
    Exchange,
    Fixture,
    RecordedRequest,
    RecordedResponse,
    header,
    split_body,
)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)  # a structured body (parsed_body, snapshot dicts)


def _header_pairs(headers: dict[str, Any] | None) -> list[tuple[str, str]]:
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


def _response(status: int, headers: list[tuple[str, str]], body: bytes, notes: list[str]) -> RecordedResponse:
    ctype = header(headers, "content-type")
    if ctype is None and body:
        ctype = _infer_content_type(body)
        headers = [*headers, ("content-type", ctype)]
        notes.append(f"content-type {ctype} added: the recording has no response headers")
    # A compressed body is kept whole: its compressed bytes cannot be cut at event boundaries.
    chunks = [body] if header(headers, "content-encoding") else split_body(body, ctype)
    return RecordedResponse(status, headers, [Chunk(0.0, c) for c in chunks])


def _fixture(exchanges: list[Exchange], source: dict[str, Any], notes: list[str], name: str) -> Fixture:
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
            body = _as_bytes(req.get("body"))
        request = RecordedRequest(req["method"], _path_of(req["uri"]), _header_pairs(req.get("headers")), body)
        status = resp["status"]["code"] if isinstance(resp.get("status"), dict) else int(resp.get("status", 200))
        resp_body = resp.get("body") or {}
        raw = resp_body.get("string") if "string" in resp_body else resp_body.get("parsed_body")
        exchanges.append(Exchange(request, _response(status, _header_pairs(resp.get("headers")), _as_bytes(raw),
                                                     notes)))
    return _fixture(exchanges, {"format": "vcrpy cassette", **(source or {})}, notes, path.stem)


def import_anthropic_snapshot(path: str | Path, source: dict[str, Any] | None = None) -> Fixture:
    path = Path(path)
    notes = ["request body re-serialized from the snapshot's parsed JSON (not the original bytes)"]
    exchanges = []
    for item in orjson.loads(path.read_bytes()):
        req, resp = item["request"], item["response"]
        request = RecordedRequest(req["method"], _path_of(req["url"]), _header_pairs(req.get("headers")),
                                  _as_bytes(req.get("body")))
        exchanges.append(Exchange(request, _response(resp["status_code"], _header_pairs(resp.get("headers")),
                                                     _as_bytes(resp.get("body")), notes)))
    return _fixture(exchanges, {"format": "anthropic-sdk-python inline snapshot", **(source or {})}, notes,
                    path.stem)


_BINARY_PREFIX = "[binary base64]: "


def import_cc_core_rows(paths: list[Path], source: dict[str, Any] | None = None, name: str = "") -> Fixture:
    """cc-core Kiro capture rows, in the order given, as one session."""
    notes: list[str] = []
    exchanges = []
    for path in paths:
        row = orjson.loads(path.read_bytes())
        body_text = row.get("reqBody")
        body = orjson.dumps(row["reqBodyJSON"]) if body_text is None and "reqBodyJSON" in row else _as_bytes(body_text)
        request = RecordedRequest(row["method"], _path_of(row["url"]), _header_pairs(row.get("reqHeaders")), body)
        res_body = row.get("resBody", row.get("resBodyText")) or ""
        if isinstance(res_body, str) and res_body.startswith(_BINARY_PREFIX):
            raw = base64.b64decode(res_body[len(_BINARY_PREFIX) :])
        else:
            raw = _as_bytes(res_body)
        exchanges.append(Exchange(request, _response(int(row["statusCode"]), _header_pairs(row.get("resHeaders")),
                                                     raw, notes)))
    return _fixture(exchanges, {"format": "cc-core capture rows", **(source or {})}, notes, name)
