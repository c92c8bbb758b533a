"""The configuration and span reference pages stay true to the code."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from threadline import config

DOCS = Path(__file__).resolve().parents[3] / "docs"
pytestmark = pytest.mark.skipif(not DOCS.is_dir(), reason="docs/ is not part of an installed wheel")


def test_every_setting_and_environment_variable_is_documented() -> None:
    page = (DOCS / "configuration.md").read_text()
    for field in dataclasses.fields(config.Settings):
        assert f"| `{field.name}` |" in page, field.name
    for variable in config.ENVIRONMENT_VARIABLES:
        assert f"`{variable}`" in page, variable


def test_span_reference_is_generated_from_the_constants() -> None:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DOCS / "reference" / "spans.md").read_text() == module.render(), (
        "docs/reference/spans.md is stale: run `python docs/gen_reference.py`"
    )
