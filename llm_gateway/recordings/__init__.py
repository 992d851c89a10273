"""Recorded traffic: the fixture format and everything that writes, serves or converts it.

- `fixtures`: the `llm-gateway/fixture@1` format (exchanges byte-exact, one file per session) and its reader and
  writer; re-exported here.
- `recorder`: the addon behind `serve --record DIR`, which writes every relayed exchange into a fixture.
- `replay`: a fake upstream that answers with recorded responses (`llm-gateway replay`, the demo, the tests).
- `importers`: other projects' recordings (vcrpy cassettes) as fixtures (`llm-gateway fixtures import-vcr`).
"""

from llm_gateway.recordings.fixtures import (
    FORMAT,
    REDACTED,
    SECRET_HEADERS,
    Chunk,
    Exchange,
    Fixture,
    RecordedMessage,
    RecordedRequest,
    RecordedResponse,
    fixture_files,
    header,
    load,
    save,
    split_body,
)

__all__ = [
    "FORMAT",
    "REDACTED",
    "SECRET_HEADERS",
    "Chunk",
    "Exchange",
    "Fixture",
    "RecordedMessage",
    "RecordedRequest",
    "RecordedResponse",
    "fixture_files",
    "header",
    "load",
    "save",
    "split_body",
]
