"""Smoke test: threadline.pydantic_ai and its framework import from the shared namespace."""

from __future__ import annotations

from importlib.metadata import distribution

import pydantic_ai

import threadline
import threadline.pydantic_ai
from threadline.testing.packaging import provided_by


def test_module_name() -> None:
    assert threadline.pydantic_ai.__name__ == "threadline.pydantic_ai"


def test_namespace_resolves_across_distributions() -> None:
    assert provided_by(threadline.__file__, "threadline")
    assert provided_by(threadline.pydantic_ai.__file__, "threadline-pydantic-ai")
    assert not provided_by(threadline.__file__, "threadline-pydantic-ai")


def test_framework_installed() -> None:
    assert pydantic_ai.__name__ == "pydantic_ai"
    assert distribution("pydantic-ai-slim").version
