"""Fixtures shared by all test packages. Keep this file small: helpers live in tests/support/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest


@pytest.fixture
async def servers() -> AsyncIterator[AsyncExitStack]:
    """Enter the context managers of tests/support/servers.py here; all stop at teardown, last started first."""
    async with AsyncExitStack() as stack:
        yield stack
