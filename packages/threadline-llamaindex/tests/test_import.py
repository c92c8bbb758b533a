"""Smoke test: threadline.llamaindex and its framework import from the shared namespace."""

from __future__ import annotations

from importlib.metadata import distribution

import llama_index.core

import threadline
import threadline.llamaindex
from threadline.testing.packaging import provided_by


def test_module_name() -> None:
    assert threadline.llamaindex.__name__ == "threadline.llamaindex"


def test_namespace_resolves_across_distributions() -> None:
    assert provided_by(threadline.__file__, "threadline")
    assert provided_by(threadline.llamaindex.__file__, "threadline-llamaindex")
    assert not provided_by(threadline.__file__, "threadline-llamaindex")


def test_framework_installed() -> None:
    assert llama_index.core.__name__ == "llama_index.core"
    assert distribution("llama-index-core").version
