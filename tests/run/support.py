"""`llm-gateway run` as a user runs it: the real CLI in a process of its own, with no controlling terminal (a
Ctrl-C typed there would reach the command itself), its stdout and stderr kept."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from tests.reliability.support import CLI, clean_env

SDK_AGENT = Path(__file__).with_name("sdk_agent.py")
COMPLETION = {
    "id": "chatcmpl-run1", "object": "chat.completion", "created": 1767225600, "model": "gpt-4.1-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from OpenAI."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
}


async def openai_upstream(request: web.BaseRequest) -> web.StreamResponse:
    """An OpenAI Chat Completions upstream: every call gets the same short answer."""
    await request.read()
    return web.json_response(COMPLETION)


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No gateway, OpenTelemetry, base-URL, proxy or CA setting of this machine; the CA and spool under tmp_path."""
    env = {k: v for k, v in clean_env().items()
           if not k.upper().endswith(("_BASE_URL", "_PROXY", "_CA_BUNDLE", "_CA_CERTS", "CERT_FILE", "_CERTIFICATE"))
           and k not in ("TRACEPARENT", "TRACESTATE")}
    env.update(LLM_GATEWAY_CA_DIR=str(tmp_path / "ca"), LLM_GATEWAY_STATE_DIR=str(tmp_path / "state"),
               OTEL_BSP_SCHEDULE_DELAY="100")
    return {**env, **extra}


def traceparent() -> tuple[str, str, str]:
    """A W3C traceparent of a sampled span, its trace id and its span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stderr.rstrip("\n").rpartition("\n")[2]


async def start_run(args: Sequence[str], env: dict[str, str], cwd: Path | None = None
                    ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, "run", *args, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)


async def finish(process: asyncio.subprocess.Process, timeout: float = 120.0) -> Ran:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def run(args: Sequence[str], env: dict[str, str], timeout: float = 120.0, cwd: Path | None = None) -> Ran:
    """`llm-gateway run ARGS` to its end, while this test's servers (upstreams, OTLP receiver) keep serving."""
    return await finish(await start_run(args, env, cwd), timeout)


def python_command(code: str) -> list[str]:
    return [sys.executable, "-c", code]
