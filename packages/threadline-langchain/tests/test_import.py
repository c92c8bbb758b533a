"""Smoke test: threadline.langchain and its framework import from the shared namespace."""

from __future__ import annotations

from importlib.metadata import distribution

import langchain_core

import threadline
import threadline.langchain
from threadline.testing.packaging import provided_by


def test_module_name() -> None:
    assert threadline.langchain.__name__ == "threadline.langchain"


def test_namespace_resolves_across_distributions() -> None:
    assert provided_by(threadline.__file__, "threadline")
    assert provided_by(threadline.langchain.__file__, "threadline-langchain")
    assert not provided_by(threadline.__file__, "threadline-langchain")


def test_framework_installed() -> None:
    assert langchain_core.__name__ == "langchain_core"
    assert distribution("langchain-core").version
