"""Arize Phoenix, a real OTLP backend, on loopback for end-to-end tests (facts: shared/backends.md).

Phoenix lives in its own virtual environment (.venv-phoenix at the repository root), created on first use and
kept as a cache. Its gRPC listener would bind every interface; a small wrapper pins it to loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-phoenix"
PHOENIX_VERSION = "20.26.1"
_STAMP = VENV / f".installed-{PHOENIX_VERSION}"

# Run inside Phoenix's environment: pin the gRPC listener to loopback, then start the server.
_LOOPBACK_WRAPPER = """
import sys, grpc.aio._server as _s
_orig = _s.Server.add_insecure_port
_s.Server.add_insecure_port = lambda self, a: _orig(self, a.replace("[::]", "127.0.0.1"))
from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
sys.exit(main())
"""


def ensure_installed() -> Path:
    python = VENV / "bin" / "python"
    if not _STAMP.exists():
        if VENV.exists():
            shutil.rmtree(VENV)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"arize-phoenix=={PHOENIX_VERSION}"], check=True)
        _STAMP.touch()
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Phoenix:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self._grpc_port = _free_port()
        self._workdir = workdir
        self._process: subprocess.Popen | None = None
        self._log = workdir / "phoenix.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Phoenix:
        python = ensure_installed()
        env = {**os.environ, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(self.port),
               "PHOENIX_GRPC_PORT": str(self._grpc_port), "PHOENIX_WORKING_DIR": str(self._workdir),
               "PHOENIX_TELEMETRY_ENABLED": "false"}
        for key in [k for k in env if k.startswith("OTEL_")]:
            del env[key]
        self._process = subprocess.Popen([str(python), "-c", _LOOPBACK_WRAPPER], env=env,
                                         stdout=self._log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"phoenix exited: {self._log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"phoenix not ready after {timeout}s: {self._log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
