"""Fixtures shared by all test packages. Keep this file small: helpers live in tests/support/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest

from llm_gateway.telemetry.spool import ENV_STATE_DIR


@pytest.fixture
async def servers() -> AsyncIterator[AsyncExitStack]:
    """Enter the context managers of tests/support/servers.py here; all stop at teardown, last started first."""
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture(autouse=True, scope="session")
def _state_of_its_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gateways the tests start, and the processes they run, keep their state (the span spool) in the session's
    temporary directory, never in the user's: spans a bench run left spooled for a port would otherwise reach a
    test's receiver that got the same port. Tests that pass a gateway an environment of their own set it there
    (`traced_gateway`, `running_gateway`)."""
    previous = os.environ.get(ENV_STATE_DIR)
    os.environ[ENV_STATE_DIR] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        os.environ.pop(ENV_STATE_DIR, None)
    else:
        os.environ[ENV_STATE_DIR] = previous
