from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import threadline.mcp

sys.path.insert(0, str(Path(__file__).parent))  # harness.py, mcp_server.py

pytest_plugins = ["threadline.testing"]


@pytest.fixture
def instrumented() -> Iterator[None]:
    """Client-side instrumentation in the test process (the server instruments itself)."""
    threadline.mcp.instrument()
    try:
        yield
    finally:
        threadline.mcp.uninstrument()
