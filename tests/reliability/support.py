"""What the reliability tests fault: the gateway as a real process (`python -m llm_gateway`), an Anthropic upstream
that streams a different answer to each prompt, the anthropic SDK as the client, and directories that fail the way
a disk does (read-only, full) with whatever privileges the test has."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import anthropic
import orjson
import pytest
from aiohttp import web

CLI = (sys.executable, "-m", "llm_gateway")
STARTUP_S = 20.0  # interpreter start and imports on a loaded 2-core machine
EXIT_S = 15.0


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without gateway or OpenTelemetry settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_GATEWAY_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no .pyc written by the gateway may run into a test's file-size limit
    return {**env, **extra}


async def telemetry_health(url: str) -> dict:
    """The `telemetry` part of the gateway's `/_gateway/health`."""
    async with aiohttp.ClientSession() as client, client.get(url + "/_gateway/health") as response:
        return (await response.json())["telemetry"]


async def telemetry_health_when(url: str, holds: Callable[[dict], bool], within_s: float = 10.0) -> dict:
    """The first `telemetry_health` that `holds` for (the telemetry process tells its counts a second apart)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not holds(health := await telemetry_health(url)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the gateway's health never became as expected: {health}")
        await asyncio.sleep(0.2)
    return health


def run_cli(*args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@dataclass(slots=True)
class CliProcess:
    process: asyncio.subprocess.Process
    log: Path  # its stderr
    url: str  # where it said it listens

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self) -> int:
        """SIGTERM, then its exit code (it is killed when it does not exit in time)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), EXIT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


@asynccontextmanager
async def cli_process(
    *args: str, env: dict[str, str], log: Path, preexec_fn: Callable[[], None] | None = None,
    command: Sequence[str] = CLI,
) -> AsyncIterator[CliProcess]:
    """`llm-gateway ARGS` (serve or replay) running until the block ends, once it said where it listens; its
    stderr goes to `log`, readable at any time."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *command, *args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr, preexec_fn=preexec_fn,
        )
    running = CliProcess(process, log, "")
    try:
        deadline = asyncio.get_running_loop().time() + STARTUP_S
        while (found := re.search(r"(?:listening|fixture\(s\)) on (http://\S+)", running.stderr())) is None:
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"llm-gateway {' '.join(args)} did not start: {running.stderr()}")
            await asyncio.sleep(0.05)
        running.url = found.group(1)
        yield running
    finally:
        await running.stop()


def file_size_limit(limit: int) -> Callable[[], None]:
    """For `preexec_fn`: no file of the process may grow past `limit` bytes. With SIGXFSZ ignored (Python ignores
    it) a write past it fails with EFBIG, as on a full disk; with SIGXFSZ at its default the kernel kills the
    process in that write (and, with no core file allowed, leaves nothing behind)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


@dataclass(slots=True)
class AnthropicUpstream:
    """Streams each prompt its own answer of about `size` bytes, in several SSE writes; keeps what it answered."""

    size: int = 4096
    answers: list[str] = field(default_factory=list)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        prompt = body["messages"][-1]["content"]
        text = f"answer to {prompt}: " + "lorem ipsum " * (self.size // 12)
        self.answers.append(text)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        usage = {"input_tokens": 10, "output_tokens": 0}
        await _event(response, "message_start", {"type": "message_start", "message": {
            "id": f"msg_{len(self.answers)}", "type": "message", "role": "assistant", "model": body["model"],
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}})
        await _event(response, "content_block_start", {"type": "content_block_start", "index": 0,
                                                       "content_block": {"type": "text", "text": ""}})
        step = max(1, len(text) // 8)
        for start in range(0, len(text), step):
            await _event(response, "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                "type": "text_delta", "text": text[start : start + step]}})
        await _event(response, "content_block_stop", {"type": "content_block_stop", "index": 0})
        await _event(response, "message_delta", {"type": "message_delta", "delta": {
            "stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 42}})
        await _event(response, "message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response


async def _event(response: web.StreamResponse, name: str, data: object) -> None:
    await response.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def ask(url: str, prompt: str, session: str) -> str:
    """One streamed model call through the gateway with the anthropic SDK; the answer's text."""
    client = anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-test", max_retries=0,
                                      default_headers={"x-session-id": session})
    async with client, client.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                              messages=[{"role": "user", "content": prompt}]) as stream:
        return await stream.get_final_text()


# ---------------------------------------------------------------------------------------------------------
# Directories that fail as a disk does


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small filesystem mounted at `path` (needs CAP_SYS_ADMIN; the test is skipped without it)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    done = subprocess.run([mount or "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True) if mount else None
    if done is None or done.returncode != 0:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


class ReadOnlyDirectory:
    """A directory made read-only on demand, really, for whoever runs the test: chmod 0500 stops a normal user;
    root ignores modes, so for root it is a tmpfs remounted read-only (EROFS) or, without mount rights, the
    immutable attribute (EPERM). Skips the test when none of these is possible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.how = "chmod" if os.geteuid() != 0 else _root_way(path)
        if self.how is None:
            pytest.skip("root without mount rights on a filesystem without chattr: no way to refuse root a write")
        self.reason = {"chmod": "Permission denied", "mount": "Read-only file system",
                       "chattr": "Operation not permitted"}[self.how]

    def make_read_only(self) -> None:
        if self.how == "chmod":
            self.path.chmod(0o500)
        elif self.how == "mount":
            subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
        else:
            subprocess.run(["chattr", "+i", str(self.path)], check=True)

    def make_writable(self) -> None:
        if self.how == "chmod":
            self.path.chmod(0o700)
        elif self.how == "mount":
            subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)
        else:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)

    def close(self) -> None:
        self.make_writable()
        if self.how == "mount":
            subprocess.run(["umount", "-l", str(self.path)], check=True)


def _root_way(path: Path) -> str | None:
    if shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0:
        return "mount"
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
        return "chattr"
    return None
