"""Converters for the recordings only `import_shared_fixtures.py` and `compose_kiro_fixtures.py` read:
anthropic-sdk-python inline snapshots and cc-core Kiro capture rows. (vcrpy cassettes are the gateway's own
`fixtures import-vcr` command: `llm_gateway.recordings.importers`.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson

from llm_gateway.recordings import Exchange, Fixture, RecordedRequest
from llm_gateway.recordings.importers import as_bytes, converted, header_pairs, path_of, recorded_response


def import_anthropic_snapshot(path: str | Path, source: dict[str, Any] | None = None) -> Fixture:
    """anthropic-sdk-python inline-snapshot JSON: a list of `{request, response}`."""
    path = Path(path)
    notes = ["request body re-serialized from the snapshot's parsed JSON (not the original bytes)"]
    exchanges = []
    for item in orjson.loads(path.read_bytes()):
        req, resp = item["request"], item["response"]
        request = RecordedRequest(req["method"], path_of(req["url"]), header_pairs(req.get("headers")),
                                  as_bytes(req.get("body")))
        exchanges.append(Exchange(request, recorded_response(resp["status_code"], header_pairs(resp.get("headers")),
                                                             as_bytes(resp.get("body")), notes)))
    return converted(exchanges, {"format": "anthropic-sdk-python inline snapshot", **(source or {})}, notes,
                     path.stem)


_BINARY_PREFIX = "[binary base64]: "


def import_cc_core_rows(paths: list[Path], source: dict[str, Any] | None = None, name: str = "") -> Fixture:
    """cc-core Kiro capture rows (`{method, url, reqHeaders, reqBody, resHeaders, resBody, ...}`), in the order
    given, as one session."""
    notes: list[str] = []
    exchanges = []
    for path in paths:
        row = orjson.loads(path.read_bytes())
        body_text = row.get("reqBody")
        body = orjson.dumps(row["reqBodyJSON"]) if body_text is None and "reqBodyJSON" in row else as_bytes(body_text)
        request = RecordedRequest(row["method"], path_of(row["url"]), header_pairs(row.get("reqHeaders")), body)
        res_body = row.get("resBody", row.get("resBodyText")) or ""
        if isinstance(res_body, str) and res_body.startswith(_BINARY_PREFIX):
            raw = base64.b64decode(res_body[len(_BINARY_PREFIX) :])
        else:
            raw = as_bytes(res_body)
        exchanges.append(Exchange(request, recorded_response(int(row["statusCode"]),
                                                             header_pairs(row.get("resHeaders")), raw, notes)))
    return converted(exchanges, {"format": "cc-core capture rows", **(source or {})}, notes, name)
