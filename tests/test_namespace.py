"""Every integration and its framework import together in one environment."""

from __future__ import annotations

import importlib
from importlib.metadata import distribution
from pathlib import Path

import pytest

import threadline

INTEGRATIONS = {
    "threadline.langchain": ("threadline-langchain", "langchain_core"),
    "threadline.llamaindex": ("threadline-llamaindex", "llama_index.core"),
    "threadline.pydantic_ai": ("threadline-pydantic-ai", "pydantic_ai"),
    "threadline.mcp": ("threadline-mcp", "mcp"),
}


@pytest.mark.parametrize("module_name", sorted(INTEGRATIONS))
def test_integration_and_framework_import(module_name: str) -> None:
    dist_name, framework = INTEGRATIONS[module_name]
    module = importlib.import_module(module_name)
    importlib.import_module(framework)
    assert module.__name__ == module_name
    assert module.__file__ is not None
    # Each integration is its own package directory, threadline/<name>/.
    assert Path(module.__file__).parent.name == module_name.rpartition(".")[2]
    assert distribution(dist_name).version == distribution("threadline").version


def test_core_is_a_regular_package() -> None:
    assert threadline.__file__ is not None
    assert Path(threadline.__file__).name == "__init__.py"
