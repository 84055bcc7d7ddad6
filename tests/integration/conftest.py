"""A real uvicorn server in a subprocess on loopback, for tests that need true HTTP streaming.

The helpers live in `tests.support.live_server`; this conftest only provides the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live_server import LiveServer, start_server, stop_server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with default settings (knowledge narrator, shipped models)."""
    server = start_server(tmp_path_factory.mktemp("server"))
    yield server
    stop_server(server)
