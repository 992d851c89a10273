"""`llm-gateway demo`: the whole product offline in one command.

A replay upstream serves a bundled, recorded Kiro CLI session; the gateway runs in front of it; a small client
plays the agent's side of the recorded conversation through the gateway; each finished session is printed as
a trace tree. No network and no API key. With OTEL_EXPORTER_OTLP_ENDPOINT set, the spans are exported too.
A recorded WebSocket (Codex's transport) is played the same way: the client's messages sent, the server's read
and compared.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import aiohttp

from llm_gateway.config import Settings
from llm_gateway.protocols.base import Opcode
from llm_gateway.recordings import REDACTED, Exchange, Fixture, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from llm_gateway.sessions.state import SessionState
from llm_gateway.sessions.tree import render
from llm_gateway.upstream.http1 import HOP_BY_HOP

#: Recorded Kiro CLI 2.4.1 traffic (see fixtures/SOURCES.md), shipped in the repository's fixtures/.
DEFAULT_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kiro" / "cli-2.4.1-session.json"

# Not replayed as sent: the client library frames the body itself (and makes its own WebSocket handshake), and
# recorded secrets are placeholders.
_SKIP_HEADERS = HOP_BY_HOP | {"accept-encoding", "sec-websocket-key", "sec-websocket-version",
                              "sec-websocket-extensions", "sec-websocket-protocol"}


def _client_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers:
        if name.lower() in _SKIP_HEADERS:
            continue
        if value == REDACTED or "REDACTED" in value:
            value = "Bearer demo-token" if name.lower() == "authorization" else "demo"
        out.append((name, value))
    return out


async def play(gateway_url: str, fixture: Fixture, out: TextIO) -> None:
    """Send the recorded requests in order, as the agent did, and read each answer to its end."""
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("User-Agent", "Accept",
                                                                                "Accept-Encoding")) as client:
        for i, exchange in enumerate(fixture.exchanges, 1):
            req = exchange.request
            if exchange.messages is not None and exchange.response.status == 101:
                await _play_socket(client, gateway_url, i, exchange, out)
                continue
            async with client.request(req.method, gateway_url + req.path, headers=_client_headers(req.headers),
                                      data=req.body) as response:
                body = await response.read()
            same = "bytes identical" if body == exchange.response.body else "BYTES DIFFER"
            target = dict((k.lower(), v) for k, v in req.headers).get("x-amz-target", req.path)
            print(f"  {i:>2}. {req.method} {target.rpartition('.')[2] or target}: {response.status}, "
                  f"{len(body)} bytes relayed, {same}", file=out)


async def _play_socket(client: aiohttp.ClientSession, gateway_url: str, i: int, exchange: Exchange,
                       out: TextIO) -> None:
    """The client's side of a recorded WebSocket: its messages sent in order, the server's read and compared."""
    req, messages = exchange.request, exchange.messages or []
    same = True
    async with client.ws_connect(gateway_url + req.path, headers=_client_headers(req.headers)) as ws:
        for message in messages:
            if message.opcode not in (Opcode.TEXT, Opcode.BINARY):
                continue  # pings and closes are the sockets' own business
            if message.from_client:
                await (ws.send_str(message.data.decode()) if message.opcode == Opcode.TEXT
                       else ws.send_bytes(message.data))
                continue
            received = await ws.receive()
            data = received.data.encode() if isinstance(received.data, str) else received.data
            same = same and data == message.data
    calls = sum(1 for m in messages if m.from_client and b'"response.create"' in m.data)
    print(f"  {i:>2}. {req.method} {req.path} (WebSocket): {len(messages)} messages relayed, {calls} "
          f"response.create, {'messages identical' if same else 'MESSAGES DIFFER'}", file=out)


async def run_demo(fixture_paths: Sequence[Path], env: Mapping[str, str] | None = None,
                   out: TextIO = sys.stdout) -> int:
    env = dict(os.environ if env is None else env)
    fixtures = [load(p) for p in fixture_paths]
    finished: list[SessionState] = []
    async with ReplayUpstream(fixtures) as upstream:
        settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url))
        gateway = await Gateway.start(settings, env, on_session_finished=finished.append)
        print(f"llm-gateway demo: replaying {', '.join(p.name for p in fixture_paths)} through {gateway.url}",
              file=out)
        print(f"  upstream: recorded traffic served from {upstream.url}; traces -> "
              f"{gateway.telemetry.destination if gateway.telemetry else 'nowhere'}", file=out)
        try:
            for fixture in fixtures:
                await play(gateway.url, fixture, out)
        finally:
            await gateway.stop()  # ends the open sessions, which prints them below
    print(file=out)
    for session in finished:
        print(render(session), file=out)
        print(file=out)
    return 0 if finished else 1


def main(fixture_paths: Sequence[str]) -> int:
    paths = [Path(p) for p in fixture_paths] or [DEFAULT_FIXTURE]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"llm-gateway demo: fixture not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    return asyncio.run(run_demo(paths))
