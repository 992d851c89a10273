"""Record, replay, import-vcr and the demo, each through its real entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from llm_gateway.config import Settings
from llm_gateway.recordings import REDACTED, fixture_files, header, load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.routing import UPSTREAM_NAMES
from llm_gateway.server import Gateway
from tests.support import FIXTURES
from tests.support.chat_spans import event_frames

ROOT = Path(__file__).resolve().parents[2]


async def _post_all(url: str, exchanges, extra_headers=None) -> list[bytes]:
    bodies = []
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        for exchange in exchanges:
            headers = {k: v for k, v in exchange.request.headers
                       if k.lower() in ("content-type", "x-amz-target", "anthropic-version")}
            headers.update(extra_headers or {})
            async with client.post(url + exchange.request.path, data=exchange.request.body,
                                   headers=headers) as response:
                bodies.append(await response.read())
    return bodies


async def test_recorded_session_replays_byte_for_byte_with_credentials_scrubbed(tmp_path):
    source = load(FIXTURES / "bedrock/converse-stream-tool-loop.json")  # binary event streams
    async with ReplayUpstream([source]) as upstream:
        settings = Settings(port=0, upstreams=dict.fromkeys(UPSTREAM_NAMES, upstream.url), record_dir=str(tmp_path))
        gateway = await Gateway.start(settings, env={})
        try:
            await _post_all(gateway.url, source.exchanges, {"Authorization": "Bearer secret-token"})
        finally:
            await gateway.stop()
    (recorded_file,) = list(fixture_files(tmp_path))
    assert b"secret-token" not in recorded_file.read_bytes()
    recorded = load(recorded_file)
    assert [header(e.request.headers, "authorization") for e in recorded.exchanges] == [REDACTED] * 2
    assert [e.request.body for e in recorded.exchanges] == [e.request.body for e in source.exchanges]
    assert [e.response.body for e in recorded.exchanges] == [e.response.body for e in source.exchanges]
    assert all(len(e.response.chunks) >= 1 for e in recorded.exchanges)
    async with ReplayUpstream([recorded]) as upstream:  # the recording is itself a working fixture
        assert await _post_all(upstream.url, recorded.exchanges) == [e.response.body for e in source.exchanges]


async def test_replay_answers_409_naming_what_is_left_when_nothing_matches():
    fixture = load(FIXTURES / "anthropic/tools-streaming.json")
    async with (ReplayUpstream([fixture]) as upstream, aiohttp.ClientSession() as client,
                client.post(upstream.url + "/v1/chat/completions", data=b"{}") as response):
        body = orjson.loads(await response.read())
    assert response.status == 409
    assert body["error"]["type"] == "replay_no_match"
    assert body["error"]["remaining"] == ["POST /v1/messages"]


async def test_replay_keeps_the_recorded_timing_scaled_by_speed():
    fixture = load(FIXTURES / "anthropic/tools-streaming.json")
    chunks = fixture.exchanges[0].response.chunks
    for i, chunk in enumerate(chunks):
        chunk.at = i * 0.01  # a 10 ms cadence
    async with ReplayUpstream([fixture], speed=2.0) as upstream, aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.post(upstream.url + "/v1/messages", data=fixture.exchanges[0].request.body) as response:
            await response.read()
        elapsed = time.monotonic() - started
    assert elapsed >= chunks[-1].at / 2 * 0.9  # never faster than the recording allows


def test_import_vcr_converts_a_cassette_byte_exact(tmp_path):
    source = load(FIXTURES / "openai_chat/tool-loop-streaming.json")
    cassette = {"interactions": [
        {"request": {"method": e.request.method, "uri": "https://api.openai.com" + e.request.path,
                     "body": e.request.body.decode(), "headers": {k: [v] for k, v in e.request.headers}},
         "response": {"status": {"code": e.response.status, "message": "OK"},
                      "headers": {k: [v] for k, v in e.response.headers},
                      "body": {"string": e.response.body.decode()}}}
        for e in source.exchanges], "version": 1}
    path = tmp_path / "cassette.yaml"
    path.write_text(yaml.safe_dump(cassette))
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, "-m", "llm_gateway", "fixtures", "import-vcr", str(path), "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    converted = load(out)
    assert [e.request.body for e in converted.exchanges] == [e.request.body for e in source.exchanges]
    assert [e.response.body for e in converted.exchanges] == [e.response.body for e in source.exchanges]
    assert len(converted.exchanges[0].response.chunks) > 1  # one chunk per SSE event


def test_replay_command_serves_fixtures_until_sigterm(tmp_path):
    fixture_path = FIXTURES / "anthropic/tools-streaming.json"
    fixture = load(fixture_path)
    with socket_port() as port:
        pass
    process = subprocess.Popen([sys.executable, "-m", "llm_gateway", "replay", str(fixture_path), "--port",
                                str(port), "--speed", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        assert f"127.0.0.1:{port}" in line
        bodies = asyncio.run(_post_all(f"http://127.0.0.1:{port}", fixture.exchanges))
        assert bodies == [fixture.exchanges[0].response.body]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_demo_replays_the_bundled_kiro_session_offline_and_prints_its_tree():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-m", "llm_gateway", "demo"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    fixture = load(FIXTURES / "kiro/cli-2.4.1-session.json")
    out = done.stdout
    assert out.count("bytes identical") == len(fixture.exchanges) and "BYTES DIFFER" not in out
    conversation = orjson.loads(fixture.exchanges[1].request.body)["conversationState"]["conversationId"]
    assert "[session] Kiro Agent session" in out and f"conversation={conversation}" in out
    assert "[invoke_agent] Kiro Agent" in out and "[execute_tool] read" in out
    # Kiro bills in credits: each call shows the credits its stream reported, the session their sum.
    calls = [e for e in fixture.exchanges
             if (header(e.request.headers, "x-amz-target") or "").endswith("GenerateAssistantResponse")]
    credits = [p["usage"] for e in calls for kind, p in event_frames(e.response.body) if kind == "meteringEvent"]
    chats = [line for line in out.splitlines() if "[chat]" in line]
    assert len(chats) == len(credits) and all("credits=" in line for line in chats)
    (session,) = [line for line in out.splitlines() if line.startswith("[session]")]
    assert float(session.rpartition("credits=")[2]) == pytest.approx(sum(credits), rel=5e-3)
    assert "cost=$" not in out


class socket_port:
    """A free loopback port (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
