"""`serve --record DIR`: writes every relayed exchange into a fixture file per session (see `fixtures`).

Credentials are scrubbed by the fixture writer; bodies are kept byte-exact, binary event streams included.
The file is rewritten after each exchange, so a session on disk is always complete up to its last exchange.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from multidict import CIMultiDict

from llm_gateway.flow import Flow, model_call
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.recordings.fixtures import Chunk, Exchange, Fixture, RecordedRequest, RecordedResponse, save
from llm_gateway.sessions.identity import identify

log = logging.getLogger("llm_gateway.recorder")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Recorder:
    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, Fixture] = {}

    def __repr__(self) -> str:
        return f"Recorder({str(self._dir)!r}, sessions={len(self._sessions)})"

    def request(self, flow: Flow) -> None:
        if flow.chunks is None:
            flow.chunks = []
        flow.keep_chunks = True

    def response_headers(self, flow: Flow) -> None:
        pass

    def done(self, flow: Flow) -> None:
        self._write(flow)

    def error(self, flow: Flow) -> None:
        if flow.status is not None:  # the upstream answered: what it sent is worth keeping
            self._write(flow)

    def _session_name(self, flow: Flow) -> str:
        call = model_call(flow)
        if call is None or flow.route.protocol is None:
            return "other-traffic"
        who = identify(flow.request_headers, ExchangeRun(*call).request)
        return f"{flow.route.protocol.name}-{who.session_key}"

    def _write(self, flow: Flow) -> None:
        try:
            name = _UNSAFE.sub("_", self._session_name(flow))[:120]
            start = flow.response_started_ns or flow.started_ns
            exchange = Exchange(
                RecordedRequest(flow.method, flow.raw_path, list(flow.request_headers.items()), flow.request_body),
                RecordedResponse(
                    flow.status or 0,
                    list((flow.response_headers or CIMultiDict()).items()),
                    [Chunk(max(0.0, (t - start) / 1e9), data) for t, data in flow.chunks or ()],
                ),
            )
            fixture = self._sessions.setdefault(
                name, Fixture([], f"recorded by llm-gateway serve --record ({name})",
                              {"origin": "llm-gateway serve --record"}, name)
            )
            fixture.exchanges.append(exchange)
            save(fixture, self._dir / f"{name}.json")
        except Exception:
            log.warning("could not record %s %s", flow.method, flow.raw_path, exc_info=True)
