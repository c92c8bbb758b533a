"""Shared setup: threadline's telemetry fixtures, no network, and a clean integration per test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_ai import Agent

import threadline.pydantic_ai
from threadline.pydantic_ai import _capability

pytest_plugins = ["threadline.testing"]


def _blocked(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("network access in tests")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may reach the network: model calls replay from cassettes or use fake models."""
    monkeypatch.setattr(socket.socket, "connect", _blocked)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    _capability._warned[0] = False
    yield
    threadline.pydantic_ai.uninstrument()
    if hasattr(Agent, "instrument_all"):
        Agent.instrument_all(False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cassette(name): vcrpy cassette in cassettes/pydantic_ai/")
