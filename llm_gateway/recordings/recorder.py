"""`serve --record DIR`: writes every relayed exchange into a fixture file per session (see `fixtures`).

Credentials are scrubbed by the fixture writer; bodies are kept byte-exact, binary event streams included. A
WebSocket is one exchange with its messages both ways (see `fixtures`), written when it closes.
The file is rewritten after each exchange (whole, then renamed over the old one), so a session on disk is always
complete up to its last exchange, even after a crash.

A directory that cannot be written at startup stops the gateway there (`ConfigError`). One that fails later (the
disk full, remounted read-only, removed) ends the recording: one error line says where and why, and the relay
goes on without recording.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from multidict import CIMultiDict

from llm_gateway.config import ENV_RECORD_DIR, ConfigError
from llm_gateway.flow import Flow, model_call
from llm_gateway.protocols.base import Adapter, HttpRequest
from llm_gateway.protocols.responses_socket import CallRequest
from llm_gateway.protocols.run import ExchangeRun
from llm_gateway.recordings.fixtures import (
    Chunk,
    Exchange,
    Fixture,
    RecordedMessage,
    RecordedRequest,
    RecordedResponse,
    save,
)
from llm_gateway.sessions.identity import identify

log = logging.getLogger("llm_gateway.recorder")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Recorder:
    def __init__(self, directory: str | Path) -> None:
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._dir):  # a file can be made there
                pass
        except OSError as exc:
            raise ConfigError(f"cannot record to {self._dir}: {exc.strerror or exc}; choose a writable directory "
                              f"with --record or {ENV_RECORD_DIR}") from None
        self._sessions: dict[str, Fixture] = {}
        self.stopped: OSError | None = None  # why recording ended, once it has

    def __repr__(self) -> str:
        state = f"stopped={self.stopped.strerror!r}" if self.stopped else f"sessions={len(self._sessions)}"
        return f"Recorder({str(self._dir)!r}, {state})"

    def request(self, flow: Flow) -> None:
        if self.stopped is not None:
            return
        if flow.websocket:
            if flow.messages is None:
                flow.messages = []
            return
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
        if call is not None and flow.websocket:
            call = _first_call(call[0], call[1], flow)
        if call is None or flow.route.protocol is None:
            return "other-traffic"
        who = identify(call[1].headers, ExchangeRun(*call).request)
        return f"{flow.route.protocol.name}-{who.session_key}"

    def _write(self, flow: Flow) -> None:
        if self.stopped is not None:
            return
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
                None if not flow.websocket else [
                    RecordedMessage(max(0.0, (t - start) / 1e9), m.from_client, int(m.opcode), m.payload)
                    for t, m in flow.messages or ()],
            )
            fixture = self._sessions.setdefault(
                name, Fixture([], f"recorded by llm-gateway serve --record ({name})",
                              {"origin": "llm-gateway serve --record"}, name)
            )
            fixture.exchanges.append(exchange)
            save(fixture, self._dir / f"{name}.json")
        except OSError as exc:
            self._stop(exc)
        except Exception:
            log.warning("could not record %s %s", flow.method, flow.raw_path, exc_info=True)

    def _stop(self, exc: OSError) -> None:
        """The first failed write ends the recording: retrying each exchange would repeat the error on every
        request, and the sessions held for rewriting would grow without ever reaching the disk."""
        self.stopped = exc
        self._sessions.clear()
        log.error("llm-gateway: recording to %s stopped: %s; requests are still relayed, not recorded",
                  self._dir, exc.strerror or exc)


def _first_call(adapter: Adapter, upgrade: HttpRequest, flow: Flow) -> tuple[Adapter, HttpRequest] | None:
    """The first model call a WebSocket carried (its session names the recording), read by the adapter's socket
    reader; None when it carried none or the adapter reads no sockets."""
    reader = getattr(adapter, "socket_reader", None)
    if reader is None:
        return None
    socket = reader(upgrade)
    for _, message in flow.messages or ():
        for event in socket.message(message):
            if isinstance(event, CallRequest):
                return adapter, event.request
    return None
