"""Issue 20, item 7: a fault at startup reads as one line that names the problem and how to fix it, never a
traceback, and the command exits non-zero, leaving nothing running. Tried as a new user would: the real CLI."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import ReadOnlyDirectory, clean_env, cli_process, run_cli


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another server listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def _one_line(done, *names: str) -> str:
    """The command failed with one line on stderr naming each of `names`, and nothing on stdout."""
    assert done.returncode != 0, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr
    for name in names:
        assert name in lines[0], lines[0]
    assert done.stdout == ""
    return lines[0]


def _processes_with(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (the gateway's children inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:  # ended meanwhile, or not ours to read
            pass
    return found


@pytest.mark.parametrize("how", ["--port", "LLM_GATEWAY_PORT"])
@pytest.mark.parametrize("exporting", [False, True], ids=["no-tracing", "telemetry-process"])
def test_serve_on_a_taken_port_says_which_address_and_how_to_choose_another(
    taken_port: int, how: str, exporting: bool
) -> None:
    marker = f"LLM_GATEWAY_TEST_MARKER={uuid.uuid4().hex}"
    env = clean_env(**dict([marker.split("=")]))
    if exporting:  # the telemetry process is started before the port is bound: it must not be left behind
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    args = ("serve", "--port", str(taken_port)) if how == "--port" else ("serve",)
    if how != "--port":
        env["LLM_GATEWAY_PORT"] = str(taken_port)
    line = _one_line(run_cli(*args, env=env), f"127.0.0.1:{taken_port}", "already in use", "--port",
                     "LLM_GATEWAY_PORT")
    assert line.startswith("llm-gateway: ")
    assert _processes_with(marker) == []


def test_serve_on_an_address_not_of_this_machine_says_so() -> None:
    _one_line(run_cli("serve", "--host", "192.0.2.1", "--port", "8787", env=clean_env()),  # TEST-NET-1
              "192.0.2.1:8787", "Cannot assign requested address", "--host")


def test_replay_on_a_taken_port_says_which(taken_port: int) -> None:
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "anthropic" / "tools-streaming.json"
    _one_line(run_cli("replay", str(fixture), "--port", str(taken_port), env=clean_env()),
              f"127.0.0.1:{taken_port}", "already in use", "--port")


# each directory setting, and what its line names besides the directory and the OS's reason
_DIRECTORIES = {
    "LLM_GATEWAY_RECORD_DIR": ("--record", "LLM_GATEWAY_RECORD_DIR"),
    "LLM_GATEWAY_CA_DIR": ("LLM_GATEWAY_CA_DIR", "LLM_GATEWAY_INTERCEPT=none"),  # both ways out
}


@pytest.mark.parametrize("variable", list(_DIRECTORIES))
def test_serve_with_a_directory_under_a_file_says_which(tmp_path: Path, variable: str) -> None:
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "directory"
    _one_line(run_cli("serve", "--port", "0", env=clean_env(**{variable: str(target)})),
              str(target), "Not a directory", *_DIRECTORIES[variable])


@pytest.mark.parametrize("variable", list(_DIRECTORIES))
def test_serve_with_a_read_only_directory_says_which(read_only_dir: ReadOnlyDirectory, variable: str) -> None:
    """For the CA: a read-only directory without a CA in it (one that holds a CA is fine)."""
    read_only_dir.make_read_only()
    _one_line(run_cli("serve", "--port", "0", env=clean_env(**{variable: str(read_only_dir.path)})),
              str(read_only_dir.path), read_only_dir.reason, *_DIRECTORIES[variable])


def test_serve_with_a_ca_that_is_not_pem_says_which_files(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    (tmp_path / "ca-key.pem").write_text("not a key")
    _one_line(run_cli("serve", "--port", "0", env=clean_env(LLM_GATEWAY_CA_DIR=str(tmp_path))),
              str(tmp_path / "ca.pem"), "not a PEM")


async def test_serve_with_an_unusable_ca_directory_and_interception_off_starts(tmp_path: Path) -> None:
    """Without hosts to intercept the CA is never needed: its directory does not matter."""
    (tmp_path / "file").write_text("")
    env = clean_env(LLM_GATEWAY_CA_DIR=str(tmp_path / "file" / "ca"), LLM_GATEWAY_INTERCEPT="none")
    async with cli_process("serve", "--port", "0", env=env, log=tmp_path / "gateway.log") as gateway:
        assert await gateway.stop() == 0


def test_ca_command_with_a_read_only_directory_says_which(read_only_dir: ReadOnlyDirectory) -> None:
    read_only_dir.make_read_only()
    _one_line(run_cli("ca", env=clean_env(LLM_GATEWAY_CA_DIR=str(read_only_dir.path))),
              str(read_only_dir.path), read_only_dir.reason)


def test_ca_command_that_cannot_write_the_bundle_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "ca-bundle.pem").mkdir()  # in the way of the bundle file
    _one_line(run_cli("ca", env=clean_env(LLM_GATEWAY_CA_DIR=str(tmp_path))),
              str(tmp_path / "ca-bundle.pem"), "Is a directory")


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
@pytest.mark.parametrize("value", ["not a url", "localhost:4318", "http://"])
def test_serve_with_an_otlp_endpoint_that_is_not_a_url_says_which_setting(variable: str, value: str) -> None:
    _one_line(run_cli("serve", "--port", "0", env=clean_env(**{variable: value})),
              f"{variable}={value!r}", "http://")


def test_replay_of_a_file_that_is_not_a_fixture_says_which(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": ')
    _one_line(run_cli("replay", str(tmp_path / "notes.json"), "--port", "0", env=clean_env()),
              str(tmp_path / "notes.json"), "not an llm-gateway/fixture@1 document")
    _one_line(run_cli("replay", str(tmp_path / "missing.json"), "--port", "0", env=clean_env()),
              str(tmp_path / "missing.json"), "No such file or directory")
