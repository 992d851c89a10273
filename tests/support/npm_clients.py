"""Agents and Node libraries from the npm registry, pinned, installed once into `.proxy-clients/` (gitignored) at
the repository root; a test that needs one skips when node or npm is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENTS_DIR = REPO / ".proxy-clients"
CLAUDE_CODE = {"@anthropic-ai/claude-code": "2.1.332"}
#: Codex's npm package is a launcher; the native binary comes in a platform package it names as an optional dependency
CODEX = {"@openai/codex": "0.169.0"}
GEMINI_CLI = {"@google/gemini-cli": "0.61.0"}
#: like Codex, a launcher of a native binary from a platform package
OPENCODE = {"opencode-ai": "1.18.33"}


def installed(packages: dict[str, str], entry: str) -> Path:
    """The path of `entry` under node_modules, installing `packages` first when it is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node clients")
    path = CLIENTS_DIR / "node_modules" / entry
    if not path.exists():
        subprocess.run(["npm", "install", "--prefix", str(CLIENTS_DIR), "--no-audit", "--no-fund", "--loglevel=error",
                        *(f"{name}@{version}" for name, version in packages.items())], check=True, timeout=600)
    return path
