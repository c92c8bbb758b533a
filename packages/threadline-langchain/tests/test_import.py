"""Smoke test: threadline.langchain and its framework import from the shared namespace."""

from __future__ import annotations

import json
from importlib.metadata import distribution
from pathlib import Path
from urllib.parse import unquote, urlparse

import langchain_core

import threadline
import threadline.langchain


def _provided_by(path: str | None, dist_name: str) -> bool:
    """True if the file at `path` is installed by distribution `dist_name`."""
    assert path is not None
    dist = distribution(dist_name)
    direct_url = dist.read_text("direct_url.json")
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        root = Path(unquote(urlparse(json.loads(direct_url)["url"]).path))
        return Path(path).resolve().is_relative_to(root.resolve())
    installed = {Path(str(dist.locate_file(f))).resolve() for f in dist.files or []}
    return Path(path).resolve() in installed


def test_module_name() -> None:
    assert threadline.langchain.__name__ == "threadline.langchain"


def test_namespace_resolves_across_distributions() -> None:
    assert _provided_by(threadline.__file__, "threadline")
    assert _provided_by(threadline.langchain.__file__, "threadline-langchain")
    assert not _provided_by(threadline.__file__, "threadline-langchain")


def test_framework_installed() -> None:
    assert langchain_core.__name__ == "langchain_core"
    assert distribution("langchain-core").version
