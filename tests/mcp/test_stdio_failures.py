"""Servers that crash, hang or write garbage: through `llm-gateway mcp` the agent gets exactly what the server did
(stdout and stderr bytes, exit code), compared with the same server run without the wrapper."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from dataclasses import dataclass

import pytest

from tests.mcp.helpers import wrapper_command
from tests.support.servers import closed_port_url

CRASH = r"""
import sys
sys.stdin.buffer.readline()
sys.stdout.buffer.write(b'{"jsonrpc":"2.0","id":1,"result":{}}\n{"jsonrpc":"2.0","id":2,"res')
sys.stdout.flush()
sys.stderr.write("boom: the server fell over\n")
sys.exit(3)
"""

GARBAGE = r"""
import sys
out = sys.stdout.buffer
out.write(b"\x00\xff\xfe not json at all\r\n{\"jsonrpc\":\"2.0\",\"id\":\n\n" + b"z" * 300_000 + b"\n")
out.write(bytes(range(256)) + b"\n[1,2,3]\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"no request had id 1\"}\n")
out.flush()
for line in sys.stdin.buffer:
    out.write(line[::-1])
    out.flush()
sys.stderr.buffer.write(b"\xc3\x28 invalid utf-8 on stderr\n")
"""

HANG = r"""
import os, signal, sys, time
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # as a shell leaves them, even under nohup
    signal.signal(sig, signal.SIG_DFL)
print(os.getpid(), file=sys.stderr, flush=True)
time.sleep(60)
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    code: int


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["LLM_GATEWAY_URL"] = closed_port_url()  # no gateway, no exporter: nothing is reported anywhere
    return env


def _shell_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


async def _run(server: list[str], stdin: bytes, *, wrapped: bool, close_stdin: bool = True) -> Outcome:
    command = wrapper_command(server) if wrapped else server
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    process.stdin.write(stdin)
    await process.stdin.drain()
    if close_stdin:
        process.stdin.close()
    stdout, stderr = await asyncio.wait_for(asyncio.gather(process.stdout.read(), process.stderr.read()), 20)
    code = await process.wait()
    return Outcome(stdout, stderr, _shell_code(code))


async def _both(server: list[str], stdin: bytes, **kw) -> tuple[Outcome, Outcome]:
    return await _run(server, stdin, wrapped=False, **kw), await _run(server, stdin, wrapped=True, **kw)


async def test_crashing_server_agent_sees_its_bytes_and_exit_code():
    request = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n'
    direct, wrapped = await _both([sys.executable, "-c", CRASH], request, close_stdin=False)
    assert direct.code == 3
    assert wrapped == direct


async def test_garbage_writing_server_agent_sees_the_same_garbage():
    stdin = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n\xff\xfe\x00 garbage in\n' + b"y" * 100_000 + b"\n"
    direct, wrapped = await _both([sys.executable, "-c", GARBAGE], stdin)
    assert b"\x00\xff\xfe" in direct.stdout and direct.code == 0
    assert wrapped == direct


async def test_large_random_bytes_pass_both_ways_unchanged():
    rng = random.Random(7)
    payload = bytes(rng.getrandbits(8) for _ in range(1_500_000)).replace(b"\r", b"\n")
    process = await asyncio.create_subprocess_exec(
        *wrapper_command(["cat"]), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=_env()
    )

    async def feed() -> None:
        view = memoryview(payload)
        while view:  # uneven writes, so chunk borders fall anywhere
            size = rng.randint(1, 200_000)
            process.stdin.write(view[:size])
            view = view[size:]
            await process.stdin.drain()
        process.stdin.close()

    _, echoed = await asyncio.wait_for(asyncio.gather(feed(), process.stdout.read()), 30)
    assert await process.wait() == 0
    assert echoed == payload


async def _hanging(wrapped: bool) -> tuple[asyncio.subprocess.Process, int]:
    command = [sys.executable, "-c", HANG]
    process = await asyncio.create_subprocess_exec(
        *(wrapper_command(command) if wrapped else command), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(),
    )
    child_pid = int(await asyncio.wait_for(process.stderr.readline(), 10))  # the server says who it is
    await asyncio.sleep(0.1)
    return process, child_pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
async def test_signal_to_wrapper_reaches_hanging_server_and_exit_code_follows(sig):
    direct, _ = await _hanging(wrapped=False)
    direct.send_signal(sig)
    direct_code = _shell_code(await asyncio.wait_for(direct.wait(), 10))
    wrapper, child_pid = await _hanging(wrapped=True)
    assert child_pid != wrapper.pid
    wrapper.send_signal(sig)  # only the wrapper: it passes the signal on
    assert await asyncio.wait_for(wrapper.wait(), 10) == direct_code == 128 + sig


async def test_hanging_server_killed_wrapper_exits_with_its_code():
    wrapper, child_pid = await _hanging(wrapped=True)
    os.kill(child_pid, signal.SIGKILL)
    assert await asyncio.wait_for(wrapper.wait(), 10) == 128 + signal.SIGKILL
    assert await wrapper.stdout.read() == b""


async def test_missing_command_exits_127_as_a_shell_does():
    process = await asyncio.create_subprocess_exec(
        *wrapper_command(["/nonexistent/mcp-server"]), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(),
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 127 and stdout == b""
    assert b"/nonexistent/mcp-server" in stderr


async def test_gateway_that_never_answers_never_delays_the_bytes():
    from tests.support.servers import silent_upstream

    async with silent_upstream() as gateway_url:
        env = {**_env(), "LLM_GATEWAY_URL": gateway_url}
        process = await asyncio.create_subprocess_exec(
            *wrapper_command(["cat"]), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
        )
        # `cat` echoes: the client's ping is answered by the echoed response, so a call is reported at once.
        call = b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":1,"result":{}}\n'
        process.stdin.write(call)
        assert await asyncio.wait_for(process.stdout.readexactly(len(call)), 5) == call
        later = b'{"jsonrpc":"2.0","method":"notifications/progress"}\n'
        started = asyncio.get_running_loop().time()
        process.stdin.write(later)  # while the report hangs on the silent gateway
        assert await asyncio.wait_for(process.stdout.readexactly(len(later)), 5) == later
        assert asyncio.get_running_loop().time() - started < 0.5
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 10) == 0
