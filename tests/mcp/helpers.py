"""Running MCP servers through `llm-gateway mcp` with taps on both sides, and reading back what went over the
wire, independently of the code under test."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from mcp.client.stdio import StdioServerParameters

from tests.support.otlp import ReceivedSpan


def wrapper_command(server: Sequence[str], name: str | None = None) -> list[str]:
    named = ["--name", name] if name else []
    return [sys.executable, "-m", "llm_gateway", "mcp", *named, "--", *server]


@dataclass(frozen=True, slots=True)
class Taps:
    """Byte copies taken by `tee`: what the client sent and got, and what the server got and sent."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.bytes"

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def tapped(server: Sequence[str], taps: Taps, name: str | None, env: Mapping[str, str]) -> StdioServerParameters:
    """The wrapper around `server`, with a tee on each pipe on both sides of it (test-only plumbing)."""
    inner = f"tee {shlex.quote(str(taps.path('server_got')))} | {shlex.join(server)} | " \
            f"tee {shlex.quote(str(taps.path('server_sent')))}"
    wrapped = wrapper_command(["sh", "-c", inner], name)
    outer = f"tee {shlex.quote(str(taps.path('client_sent')))} | {shlex.join(wrapped)} | " \
            f"tee {shlex.quote(str(taps.path('client_got')))}"
    return StdioServerParameters(command="sh", args=["-c", outer], env=dict(env))


def messages(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class Expected:
    name: str
    request_id: str
    error_type: str | None
    request: dict[str, Any]
    response: dict[str, Any]


def expected_calls(requests_from: bytes, responses_from: bytes) -> list[Expected]:
    """Each request in one direction's bytes with the response to it in the other's."""
    responses = {m["id"]: m for m in messages(responses_from) if "method" not in m and "id" in m}
    out = []
    for m in messages(requests_from):
        if "method" in m and "id" in m and m["id"] in responses:
            response = responses[m["id"]]
            params = m.get("params") or {}
            # a tool's or prompt's name goes in the span name, a resource URI never does (issue 14)
            target = params.get("name") if m["method"] in ("tools/call", "prompts/get") else None
            error = response.get("error")
            error_type = (str(error["code"]) if error else
                          "tool_error" if (response.get("result") or {}).get("isError") else None)
            out.append(Expected(f"{m['method']} {target}" if target else m["method"], str(m["id"]), error_type,
                                m, response))
    return out


def mcp_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if "mcp.method.name" in s.attributes]
