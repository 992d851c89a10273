"""The whole gateway as a forward proxy: curl with -x and --cacert, a Codex-style WebSocket on chatgpt.com, a
tunnelled host with its own CA, an upstream whose certificate is not trusted (502), malformed CONNECTs (400),
and `llm-gateway serve` itself verifying an original host against SSL_CERT_FILE."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import httpx2
import orjson
import pytest
from aiohttp import WSMsgType, web

from llm_gateway.proxy.trust import ensure_ca
from tests.proxy.conftest import ProxiedGateway
from tests.proxy.helpers import TlsOrigin
from tests.proxy.test_sdk_through_proxy import trusting
from tests.relay.test_websocket import _BINARY_DOWN, _TEXT_DOWN, WebSocketUpstream
from tests.support.servers import LOOPBACK, RecordingUpstream, raw_http, running_upstream

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")
CHAT = b'{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}'


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    process = await asyncio.create_subprocess_exec(CURL, "-sS", "--max-time", "20", *args,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await process.communicate()
    return subprocess.CompletedProcess(args, process.returncode or 0, out, err)


@needs_curl
async def test_curl_with_the_ca_is_read_and_without_it_fails_with_one_line_to_fix_it(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, caplog: pytest.LogCaptureFixture) -> None:
    upstream = RecordingUpstream(body=b'{"id":"chatcmpl-curl"}')
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    proxied = await servers.enter_async_context(proxied_gateway(url))
    ok = await curl("-x", proxied.url, "--cacert", str(proxied.ca), "https://api.openai.com/v1/chat/completions",
                    "-H", "Authorization: Bearer sk-curl", "-H", "Content-Type: application/json", "--data", CHAT)
    assert (ok.returncode, ok.stdout) == (0, b'{"id":"chatcmpl-curl"}'), ok.stderr
    assert upstream.arrived[0].body == CHAT
    assert upstream.arrived[0].values("Authorization") == ["Bearer sk-curl"]

    caplog.set_level(logging.WARNING, "llm_gateway.proxy")
    refused = await curl("-x", proxied.url, "https://api.openai.com/v1/models")  # the system store only
    assert refused.returncode == 60, refused.stderr  # curl: the peer's certificate cannot be verified
    await asyncio.sleep(0.2)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "refused the gateway's certificate for api.openai.com (tlsv1 alert unknown ca)" in line
    assert str(proxied.ca) in line and len(upstream.arrived) == 1


@needs_curl
async def test_tunnelled_host_shows_its_own_certificate_to_curl(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, tmp_path: Path) -> None:
    origin = await servers.enter_async_context(TlsOrigin(tmp_path / "origin-ca", b"\x00origin\xff").running())
    proxied = await servers.enter_async_context(proxied_gateway(None))
    result = await curl("-x", proxied.url, "--cacert", str(origin.ca.files.cert), "--data", "abc",
                        f"https://{LOOPBACK}:{origin.port}/x")
    assert (result.returncode, result.stdout) == (0, b"\x00origin\xff"), result.stderr
    assert origin.bodies == [b"abc"]


async def test_codex_websocket_on_chatgpt_com_is_relayed_frame_by_frame(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway) -> None:
    upstream = WebSocketUpstream()
    url = await servers.enter_async_context(running_upstream(upstream.handle))
    proxied = await servers.enter_async_context(proxied_gateway(url))
    async with aiohttp.ClientSession() as client, client.ws_connect(
        "wss://chatgpt.com/backend-api/codex/responses", proxy=proxied.url, ssl=trusting(proxied),
        headers={"Authorization": "Bearer chatgpt-token", "chatgpt-account-id": "acct"},
        protocols=("openai-realtime",),
    ) as ws:
        down = [await asyncio.wait_for(ws.receive(), 5) for _ in range(2)]
        await ws.send_str("up ✓")
        await ws.send_str("bye")
        closing = await asyncio.wait_for(ws.receive(), 5)
    assert [(m.type, m.data) for m in down] == [(WSMsgType.TEXT, _TEXT_DOWN), (WSMsgType.BINARY, _BINARY_DOWN)]
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, 4001)
    assert upstream.received == [(WSMsgType.TEXT, "up ✓")]
    assert upstream.headers["Authorization"] == "Bearer chatgpt-token"


async def test_untrusted_upstream_certificate_is_a_502_naming_host_and_error(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway, tmp_path: Path) -> None:
    # localhost is read (LLM_GATEWAY_INTERCEPT) and has no override: the gateway goes to localhost itself over
    # TLS, whose certificate comes from a CA the system does not trust.
    origin = await servers.enter_async_context(TlsOrigin(tmp_path / "origin-ca", host="localhost").running())
    proxied = await servers.enter_async_context(proxied_gateway(None, env={"LLM_GATEWAY_INTERCEPT": "localhost"}))
    async with httpx2.AsyncClient(proxy=proxied.url, verify=trusting(proxied), trust_env=False) as client:
        response = await client.post(f"https://localhost:{origin.port}/v1/chat/completions", content=CHAT)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["upstream"] == f"https://localhost:{origin.port}"
    assert "certificate" in error["cause"].lower() and f"localhost:{origin.port}" in error["message"]
    assert origin.bodies == []  # nothing was sent over the unverified connection


@pytest.mark.parametrize("head", [b"CONNECT nohost HTTP/1.1\r\nHost: nohost\r\n\r\n",
                                  b"CONNECT a.example:99999 HTTP/1.1\r\nHost: a\r\n\r\n"])
async def test_malformed_connect_is_a_400(proxied_gateway: ProxiedGateway, head: bytes) -> None:
    async with proxied_gateway(None) as proxied:
        answer = await raw_http(proxied.gateway.port, head)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "bad_connect"


async def test_connect_after_another_request_on_its_connection_is_a_400(proxied_gateway: ProxiedGateway) -> None:
    async with proxied_gateway(None) as proxied:
        answer = await raw_http(proxied.gateway.port, b"GET /_gateway/health HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n"
                                b"Connection: close\r\n\r\n")
    first, _, rest = answer.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 ") and b"first request on its connection" in rest


@needs_curl
async def test_serve_verifies_the_original_host_against_ssl_cert_file(servers: AsyncExitStack, tmp_path: Path) -> None:
    """No override: a read host's requests go to the host itself, verified with the trust store the gateway process
    was started with (SSL_CERT_FILE here holds the origin's CA)."""
    origin = await servers.enter_async_context(TlsOrigin(tmp_path / "origin-ca", b"from origin", "localhost").running())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_GATEWAY_", "OTEL_"))}
    env |= {"SSL_CERT_FILE": str(origin.ca.files.cert), "LLM_GATEWAY_INTERCEPT": "localhost",
            "LLM_GATEWAY_CA_DIR": str(tmp_path / "gateway-ca")}
    ca = tmp_path / "gateway-ca" / "ca.pem"
    ensure_ca(ca.parent)  # `llm-gateway ca`, before the client is configured
    ca = tmp_path / "gateway-ca" / "ca.pem"
    ensure_ca(ca.parent)  # `llm-gateway ca`, before the client is configured
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_gateway", "serve", "--port", "0", env=env, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        lines = [(await asyncio.wait_for(process.stderr.readline(), 20)).decode()]
        while not lines[-1].startswith("  traces"):
            lines.append((await asyncio.wait_for(process.stderr.readline(), 20)).decode())
        url = re.search(r"listening on (http://\S+)", lines[0]).group(1)  # type: ignore[union-attr]
        startup = "".join(lines)
        assert f"HTTPS_PROXY={url}" in startup and f"{ca};" in startup and "+1 from LLM_GATEWAY_INTERCEPT" in startup
        result = await curl("-x", url, "--cacert", str(ca), f"https://localhost:{origin.port}/v1/models")
        assert (result.returncode, result.stdout) == (0, b"from origin"), result.stderr
    finally:
        process.terminate()
        await process.wait()



async def test_stop_lets_a_stream_in_an_intercepted_connection_finish(
        servers: AsyncExitStack, proxied_gateway: ProxiedGateway) -> None:
    async def slow_stream(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(5):
            await response.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    url = await servers.enter_async_context(running_upstream(slow_stream))
    async with proxied_gateway(url) as proxied, httpx2.AsyncClient(
            proxy=proxied.url, verify=trusting(proxied), trust_env=False) as client, client.stream(
            "POST", "https://api.anthropic.com/v1/messages", content=b"{}") as response:
        raw = response.aiter_raw()
        chunks = [await anext(raw)]
        # the decrypted connection is served by the front end, as direct ones are (`front/`)
        server = proxied.gateway.runner.server
        assert [len(front.connections) for front in server.fronts()] == [0, 1]  # type: ignore[union-attr]
        stopping = asyncio.create_task(proxied.gateway.stop())
        chunks += [chunk async for chunk in raw]
        await stopping
    assert b"".join(chunks) == b"".join(f"data: {i}\n\n".encode() for i in range(5))
