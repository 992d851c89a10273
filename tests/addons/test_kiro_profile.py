"""LLM_GATEWAY_KIRO_PROFILE_ARN: the gateway adds the profileArn a custom endpoint made Amazon Q CLI drop."""

from __future__ import annotations

import aiohttp
import orjson

from llm_gateway.config import Settings
from llm_gateway.recordings import load
from llm_gateway.recordings.replay import ReplayUpstream
from llm_gateway.server import Gateway
from tests.support import FIXTURES

ARN = "arn:aws:codewhisperer:us-east-1:111122223333:profile/TESTPROFILE"


async def _send(body: bytes, env: dict[str, str]) -> bytes:
    fixture = load(FIXTURES / "kiro/cli-2.4.1-session.json")
    exchange = fixture.exchanges[1]  # a recorded GenerateAssistantResponse turn
    async with ReplayUpstream([fixture]) as upstream:
        gateway = await Gateway.start(Settings(port=0, upstreams={"kiro": upstream.url}), env)
        try:
            headers = {k: v for k, v in exchange.request.headers if k.lower() in ("content-type", "x-amz-target")}
            async with aiohttp.ClientSession() as client, client.post(gateway.url + "/", data=body,
                                                                       headers=headers) as response:
                assert response.status == 200
                assert await response.read() == exchange.response.body
        finally:
            await gateway.stop()
        return upstream.requests[0].body


async def test_missing_profile_arn_is_added_and_nothing_else_changes():
    recorded = orjson.loads(load(FIXTURES / "kiro/cli-2.4.1-session.json").exchanges[1].request.body)
    recorded.pop("profileArn", None)
    body = orjson.dumps(recorded)
    arrived = await _send(body, {"LLM_GATEWAY_KIRO_PROFILE_ARN": ARN})
    assert orjson.loads(arrived) == {"profileArn": ARN, **recorded}
    assert arrived.endswith(body[1:])  # every byte the client sent is still there, in order


async def test_body_with_a_profile_arn_or_without_the_setting_is_forwarded_byte_for_byte():
    body = load(FIXTURES / "kiro/cli-2.4.1-session.json").exchanges[1].request.body
    assert b'"profileArn"' in body
    assert await _send(body, {"LLM_GATEWAY_KIRO_PROFILE_ARN": ARN}) == body
    stripped = orjson.dumps({k: v for k, v in orjson.loads(body).items() if k != "profileArn"})
    assert await _send(stripped, {}) == stripped
