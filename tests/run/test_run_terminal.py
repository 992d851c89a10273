"""`llm-gateway run` in a terminal (issue 16): the command owns it, as an interactive agent needs: it reads and
writes the terminal itself, and a Ctrl-C typed there reaches it once (the terminal sends SIGINT to the whole
foreground process group; `run` must not pass on a second one)."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.reliability.support import CLI
from tests.run.support import run_env

AGENT = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda *_: got.append(1))
print("ttys", os.isatty(0), os.isatty(1), os.isatty(2), flush=True)
print("name?", flush=True)
print("hello,", input().strip(), flush=True)
print("ready for ctrl-c", flush=True)
deadline = time.monotonic() + 10
while not got and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)  # a second SIGINT, if run passed one on, would arrive meanwhile
print("interrupts", len(got), flush=True)
sys.exit(len(got) + 40)
"""


def _take_terminal() -> None:
    """In the child, after setsid: the pty on stdin becomes its controlling terminal, its group the foreground."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(master: int, seen: bytearray, text: bytes, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {text!r} in {bytes(seen)!r}"
        if select.select([master], [], [], remaining)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's last user closed it
                chunk = b""
            assert chunk, f"the terminal closed before {text!r}: {bytes(seen)!r}"
            seen += chunk


def test_the_command_owns_the_terminal_and_a_typed_ctrl_c_reaches_it_once(tmp_path: Path) -> None:
    master, slave = os.openpty()
    process = subprocess.Popen([*CLI, "run", "--", sys.executable, "-c", AGENT], env=run_env(tmp_path),
                               stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                               preexec_fn=_take_terminal)
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, seen, b"name?")
        os.write(master, b"terminal\n")
        _read_until(master, seen, b"ready for ctrl-c")
        os.write(master, b"\x03")  # Ctrl-C: the line discipline sends SIGINT to the foreground group
        status = process.wait(timeout=60)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    output = seen.decode(errors="replace")
    assert "ttys True True True" in output
    assert "hello, terminal" in output
    assert "interrupts 1" in output, output
    assert status == 41, output
