"""Smoke test: threadline.mcp and its framework import from the shared namespace."""

from __future__ import annotations

from importlib.metadata import distribution

import mcp

import threadline
import threadline.mcp
from threadline.testing.packaging import provided_by


def test_module_name() -> None:
    assert threadline.mcp.__name__ == "threadline.mcp"


def test_namespace_resolves_across_distributions() -> None:
    assert provided_by(threadline.__file__, "threadline")
    assert provided_by(threadline.mcp.__file__, "threadline-mcp")
    assert not provided_by(threadline.__file__, "threadline-mcp")


def test_framework_installed() -> None:
    assert mcp.__name__ == "mcp"
    assert distribution("mcp").version
