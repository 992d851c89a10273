"""Issue 20, item 1: the gateway killed with SIGKILL mid-session (relay and telemetry process alike, as a machine
crash or the OOM killer would) and started again. The agent's next call continues the same trace, and once the
session ended no span of that trace points at a parent that was never exported: the restarted gateway emits the
session and turn spans under the ids the spans exported before the crash name (derived from the session key, the
agent and the ordinal of the turn's prompt)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anthropic
import orjson

from llm_gateway.recordings import load
from tests.reliability.support import clean_env, cli_process
from tests.support import FIXTURES
from tests.support.otlp import OTLPReceiver
from tests.support.servers import closed_port_url, running_replay

SESSION = "crash-restart-1"
FIXTURE = load(FIXTURES / "anthropic/tool-runner-loop.json")  # a tool call, then the answer with its result


async def _call(url: str, index: int) -> None:
    body = orjson.loads(FIXTURE.exchanges[index].request.body)
    client = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0,
                                      default_headers={"X-Claude-Code-Session-Id": SESSION})
    async with client.beta.messages.stream(model=body["model"], max_tokens=body["max_tokens"],
                                           messages=body["messages"], tools=body["tools"]) as stream:
        await stream.get_final_message()


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for child in children for c in (child, *map(str, _descendants(int(child))))]


async def test_a_gateway_killed_mid_turn_and_restarted_leaves_no_span_without_its_parent(tmp_path: Path) -> None:
    receiver = await OTLPReceiver().start()
    port = closed_port_url().rsplit(":", 1)[1]
    try:
        async with running_replay([FIXTURE]) as upstream:
            env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="50")
            args = ("serve", "--port", port, "--upstream", f"anthropic={upstream.url}")
            async with cli_process(*args, env=env, log=tmp_path / "first.log") as first:
                await _call(first.url, 0)  # the model asks for a tool: the turn stays open
                await receiver.wait_for(lambda s: any(x.name.startswith("chat ") for x in s))
                for pid in (*_descendants(first.process.pid), first.process.pid):
                    os.kill(pid, signal.SIGKILL)
                await first.process.wait()
            before = list(receiver.spans)
            assert not [s for s in before if s.name.startswith(("invoke_agent ", "session "))]  # lost in the crash
            async with cli_process(*args, env=env, log=tmp_path / "second.log") as second:
                await _call(second.url, 1)  # the tool's result: the turn goes on and ends with the answer
            spans = await receiver.wait_for(lambda s: any(x.name.startswith("session ") for x in s))
    finally:
        await receiver.stop()

    chats = [s for s in spans if s.name.startswith("chat ")]
    assert len(chats) == len(FIXTURE.exchanges)
    assert len({s.trace_id for s in spans}) == 1
    exported = {s.span_id for s in spans}
    assert [s.name for s in spans if s.parent_id is not None and s.parent_id not in exported] == []
    (turn,) = [s for s in spans if s.name.startswith("invoke_agent ")]
    assert {c.parent_id for c in chats} == {turn.span_id}  # the chat from before the crash found its turn
