"""`llm-gateway run` as a command (issue 16): the command owns the terminal, so the gateway's own lines come before
it starts and after it exits (or go to --log FILE); startup faults read as one line and the command never runs;
a command that cannot be started exits as a shell says; a trace backend that is down holds the exit only for the
exporter's own timeout."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from tests.run.support import python_command, run, run_env
from tests.support.servers import closed_port_url

# Through the gateway's proxy to a host it reads, with the system's roots only: the handshake is refused, and the
# gateway logs that this client does not trust its CA, while the command is still running.
DISTRUSTING_CLIENT = """
import os, socket, ssl, sys
print("command: start", file=sys.stderr, flush=True)
proxy = os.environ["HTTPS_PROXY"].rpartition("//")[2]
host, _, port = proxy.rpartition(":")
sock = socket.create_connection((host, int(port)))
sock.sendall(b"CONNECT api.anthropic.com:443 HTTP/1.1\\r\\nHost: api.anthropic.com:443\\r\\n\\r\\n")
assert sock.recv(4096).startswith(b"HTTP/1.1 200")
context = ssl.create_default_context(cafile=ssl.get_default_verify_paths().openssl_cafile)
try:
    context.wrap_socket(sock, server_hostname="api.anthropic.com")
except ssl.SSLCertVerificationError:
    print("command: refused the certificate", file=sys.stderr, flush=True)
import time; time.sleep(0.5)
print("command: end", file=sys.stderr, flush=True)
"""


async def test_the_gateways_log_lines_wait_until_the_command_has_exited(tmp_path: Path) -> None:
    ran = await run(["--", *python_command(DISTRUSTING_CLIENT)], run_env(tmp_path))

    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.splitlines()
    assert lines.index("command: start") == 1  # after run's one startup line
    end = lines.index("command: end")
    assert lines[1:end + 1] == ["command: start", "command: refused the certificate", "command: end"]
    warning = next(i for i, line in enumerate(lines) if "does not trust the gateway's CA" in line)
    assert warning > end
    assert ran.stdout == ""


async def test_with_log_the_gateways_lines_go_to_the_file_and_the_last_line_to_stderr_too(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    ran = await run(["--log", str(log), "--", *python_command(DISTRUSTING_CLIENT)], run_env(tmp_path))

    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.splitlines() == ["command: start", "command: refused the certificate", "command: end",
                                       ran.last_line]
    written = log.read_text()
    assert "llm-gateway listening on http://127.0.0.1:" in written  # the startup description
    assert "does not trust the gateway's CA" in written
    assert written.splitlines()[-1] == ran.last_line


async def test_run_on_a_taken_port_says_so_in_one_line_and_never_starts_the_command(tmp_path: Path) -> None:
    started = tmp_path / "started"
    with socket.create_server(("127.0.0.1", 0)) as other:  # another server has the port
        taken_port = other.getsockname()[1]
        ran = await run(["--port", str(taken_port), "--", *python_command(f"open({str(started)!r}, 'w')")],
                        run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=closed_port_url()))

    assert ran.returncode != 0
    assert ran.stderr.splitlines() == [ran.last_line]
    assert f"127.0.0.1:{taken_port} is already in use" in ran.last_line and "--port" in ran.last_line
    assert "Traceback" not in ran.stderr and not started.exists()


async def test_a_base_url_that_is_not_a_url_is_a_startup_fault_naming_it(tmp_path: Path) -> None:
    ran = await run(["--", "true"], run_env(tmp_path, OPENAI_BASE_URL="api.openai.com/v1"))
    assert ran.returncode != 0
    assert ran.stderr.splitlines() == [ran.last_line] and "OPENAI_BASE_URL" in ran.last_line


@pytest.mark.parametrize(("command", "status"), [(["no-such-agent-here"], 127), (["/dev/null"], 126)])
async def test_a_command_that_cannot_be_started_exits_as_a_shell_says(
    tmp_path: Path, command: list[str], status: int
) -> None:
    ran = await run(["--", *command], run_env(tmp_path))
    assert ran.returncode == status, ran.stderr
    assert any(line.startswith(f"llm-gateway run: {command[0]}: ") for line in ran.stderr.splitlines())


async def test_run_without_a_command_says_how_to_give_one(tmp_path: Path) -> None:
    ran = await run([], run_env(tmp_path))
    assert ran.returncode == 2 and "llm-gateway run -- " in ran.stderr


async def test_a_trace_backend_that_is_down_holds_the_exit_only_for_the_exporters_timeout(tmp_path: Path) -> None:
    env = run_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=closed_port_url(), OTEL_EXPORTER_OTLP_TIMEOUT="1",
                  LLM_GATEWAY_PRINT="tree")
    code = "import anthropic; anthropic.Anthropic(api_key='k', max_retries=0).models.list()"
    began = time.monotonic()
    ran = await run(["--upstream", f"anthropic={closed_port_url()}", "--", sys.executable, "-c",
                     f"try:\n {code}\nexcept Exception: pass"], env)
    assert ran.returncode == 0, ran.stderr
    assert time.monotonic() - began < 15


async def test_a_proxy_the_user_set_is_kept_and_run_says_so_before_the_command_starts(tmp_path: Path) -> None:
    code = "import os; print(os.environ['https_proxy'], 'HTTPS_PROXY' in os.environ)"
    ran = await run(["--", *python_command(code)], run_env(tmp_path, https_proxy="http://proxy.example:3128"))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "http://proxy.example:3128 False\n"
    assert "the proxy you set (http://proxy.example:3128) is kept" in ran.stderr.splitlines()[1]
