"""Arize Phoenix, a real OTLP backend, on loopback for end-to-end tests, and what its own APIs show.

Phoenix lives in its own virtual environment (.venv-phoenix at the repository root), created on first use and
kept as a cache. Its gRPC listener would bind every interface; a small wrapper pins it to loopback.

Phoenix groups traces into sessions by the `session.id` of their spans, and counts a session's tokens over its LLM
spans (spans whose `gen_ai.operation.name` is a model call). Its UI's sessions page shows the GraphQL field
`ProjectSession.tokenUsage`; the REST API's session list (`/v1/projects/{p}/sessions`) has the same sums as
`token_count_*`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

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


_SESSION_QUERY = """
query ($sessionId: String!) {
  getProjectSessionById(sessionId: $sessionId) {
    sessionId
    numTraces
    tokenUsage { prompt completion total }
  }
}
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

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return json.loads(response.read())

    def spans(self, project: str) -> list[dict[str, Any]]:
        """The project's spans as the REST API gives them (none while the project does not exist yet)."""
        try:
            return self._get(f"/v1/projects/{urllib.parse.quote(project)}/spans?limit=1000")["data"]
        except OSError:
            return []

    def sessions(self, project: str) -> list[dict[str, Any]]:
        """The project's sessions from the REST API, each with its traces and `token_count_prompt`, `_completion`
        and `_total`."""
        try:
            return self._get(f"/v1/projects/{urllib.parse.quote(project)}/sessions")["data"]
        except OSError:
            return []

    def session(self, session_id: str) -> dict[str, Any] | None:
        """A session as the UI reads it over GraphQL: `sessionId`, `numTraces`, `tokenUsage {prompt completion
        total}`."""
        body = json.dumps({"query": _SESSION_QUERY, "variables": {"sessionId": session_id}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]["getProjectSessionById"]
