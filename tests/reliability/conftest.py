"""Fixtures of the reliability tests (issue 20); the helpers are in `support.py` beside this file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import ReadOnlyDirectory


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[ReadOnlyDirectory]:
    """A writable directory until `make_read_only()`; writable again, and unmounted, at teardown."""
    directory = ReadOnlyDirectory(tmp_path / "read-only")
    try:
        yield directory
    finally:
        directory.close()
