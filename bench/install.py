"""Installs the peers the harness compares against, each into its own place: nginx and wrk from Debian's
packages (apt-get), LiteLLM's proxy from PyPI into its own virtualenv `bench/.venv-litellm`.

Every function answers (what was found or installed, or None; why not) and never raises: a peer that cannot be
had is reported in the results, never silently left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
LITELLM_VENV = BENCH_DIR / ".venv-litellm"
_APT_TIMEOUT_S = 600
_PIP_TIMEOUT_S = 900


@dataclass(frozen=True, slots=True)
class Found:
    """A usable tool: what to run, and its version."""

    executable: str
    version: str


@dataclass(slots=True)
class _Apt:
    updated: bool = False


_apt = _Apt()


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def apt_tool(package: str, binary: str, *, install: bool) -> tuple[Found | None, str | None]:
    """`binary` from the Debian package `package`, installed with apt-get when missing and `install` is set."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        if not install:
            return None, f"{binary} is not installed and --skip-install was given (apt-get install {package})"
        error = _apt_install(package)
        if error:
            return None, error
        path = shutil.which(binary) or f"/usr/sbin/{binary}"
        if not os.path.exists(path):
            return None, f"apt-get installed {package} but {binary} is not on PATH"
    return Found(path, _version_line(path)), None


def _apt_install(package: str) -> str | None:
    if shutil.which("apt-get") is None:
        return f"no apt-get on this machine to install {package}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if not _apt.updated:
            update = _run(["apt-get", "update"], _APT_TIMEOUT_S, env)
            if update.returncode != 0:
                return f"apt-get update failed ({update.returncode}): {_tail(update.stderr or update.stdout)}"
            _apt.updated = True
        done = _run(["apt-get", "install", "-y", "--no-install-recommends", package], _APT_TIMEOUT_S, env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install {package} failed: {exc}"
    if done.returncode != 0:
        return f"apt-get install {package} failed ({done.returncode}): {_tail(done.stderr or done.stdout)}"
    return None


def _version_line(executable: str) -> str:
    # nginx -v and wrk -v both print their version on the first line (to stderr / stdout, exit code 0 / 1).
    try:
        done = _run([executable, "-v"], 10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stderr or "") + (done.stdout or "")
    return text.strip().splitlines()[0] if text.strip() else "unknown"


def litellm(*, install: bool) -> tuple[Found | None, str | None]:
    """The `litellm` proxy command from its own virtualenv, created and filled with `litellm[proxy]` if missing."""
    executable = LITELLM_VENV / "bin" / "litellm"
    if not executable.exists():
        if not install:
            return None, f"{executable} is missing and --skip-install was given"
        error = _pip_install_litellm()
        if error:
            return None, error
    version = _venv_version("litellm")
    if version is None:
        return None, f"{LITELLM_VENV} has no importable litellm package"
    return Found(str(executable), f"litellm {version}"), None


def _pip_install_litellm() -> str | None:
    try:
        # The base interpreter, not this virtualenv's: the peer must not see the project's packages.
        base = getattr(sys, "_base_executable", sys.executable)
        venv = _run([base, "-m", "venv", str(LITELLM_VENV)], 120)
        if venv.returncode != 0:
            return f"python -m venv failed: {_tail(venv.stderr)}"
        pip = _run([str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], _PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip install litellm[proxy] failed: {exc}"
    if pip.returncode != 0:
        return f"pip install litellm[proxy] failed ({pip.returncode}): {_tail(pip.stderr or pip.stdout)}"
    return None


def _venv_version(distribution: str) -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    try:
        done = _run([str(python), "-c", code], 60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def py_spy(*, install: bool) -> tuple[Found | None, str | None]:
    """py-spy in the project's virtualenv (the interpreter running the harness)."""
    executable = Path(sys.executable).parent / "py-spy"
    if not executable.exists():
        if not install:
            return None, "py-spy is not installed and --skip-install was given (pip install py-spy)"
        try:
            done = _run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], _PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"pip install py-spy failed: {exc}"
        if done.returncode != 0 or not executable.exists():
            return None, f"pip install py-spy failed: {_tail(done.stderr or done.stdout)}"
    try:
        version = _run([str(executable), "--version"], 10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "unknown"
    return Found(str(executable), version), None
