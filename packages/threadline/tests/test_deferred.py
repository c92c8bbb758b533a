"""Instrumentation deferred to the framework's import, and packages that export names lazily."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from threadline._deferred import DeferredInstrumentation, lazy_exports, when_imported

calls: list[tuple[str, dict[str, Any]]] = []


def record_instrument(**options: Any) -> None:
    calls.append(("instrument", options))


def record_uninstrument() -> None:
    calls.append(("uninstrument", {}))


def broken_instrument(**options: Any) -> None:
    raise RuntimeError("instrumentation bug")


@pytest.fixture
def framework(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module that exists on the path and is not imported yet."""
    name = f"fake_framework_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls.clear()
    yield name
    sys.modules.pop(name, None)


def _deferred(framework: str, instrument: str = "record_instrument") -> DeferredInstrumentation:
    return DeferredInstrumentation(
        framework,
        instrument=f"{__name__}:{instrument}",
        uninstrument=f"{__name__}:record_uninstrument",
        options=("verbose",),
    )


def test_instruments_when_the_framework_is_imported(framework: str) -> None:
    deferred = _deferred(framework)
    deferred.enable({"verbose": True, "skip_dep_check": True})
    assert calls == []
    assert framework not in sys.modules

    module = importlib.import_module(framework)

    assert module.VALUE == 42
    assert calls == [("instrument", {"verbose": True})]  # options it does not take are left out


def test_instruments_at_once_when_the_framework_is_imported_already(framework: str) -> None:
    importlib.import_module(framework)
    deferred = _deferred(framework)
    deferred.enable({})
    assert calls == [("instrument", {})]
    deferred.enable({"verbose": True})  # a later call passes its options on
    assert calls[-1] == ("instrument", {"verbose": True})


def test_disabled_before_the_import_does_nothing(framework: str) -> None:
    deferred = _deferred(framework)
    deferred.enable({})
    deferred.disable()
    importlib.import_module(framework)
    assert calls == []
    assert not deferred.enabled

    deferred.enable({})  # enabled again once imported: at once
    assert calls == [("instrument", {})]


def test_disable_uninstruments_an_imported_framework(framework: str) -> None:
    importlib.import_module(framework)
    deferred = _deferred(framework)
    deferred.enable({})
    deferred.disable()
    assert calls == [("instrument", {}), ("uninstrument", {})]


def test_an_error_in_instrumenting_never_reaches_the_import(
    framework: str, caplog: pytest.LogCaptureFixture
) -> None:
    deferred = _deferred(framework, instrument="broken_instrument")
    deferred.enable({})
    with caplog.at_level(logging.WARNING, logger="threadline"):
        module = importlib.import_module(framework)
    assert module.VALUE == 42
    assert any("instrumentation bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_when_imported_calls_back_with_the_module(framework: str) -> None:
    seen: list[types.ModuleType] = []
    when_imported(framework, seen.append, site="test")
    assert seen == []
    module = importlib.import_module(framework)
    assert seen == [module]
    when_imported(framework, seen.append, site="test")  # imported already: at once
    assert seen == [module, module]


def test_lazy_exports_import_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("lazy_package")
    monkeypatch.setitem(sys.modules, "lazy_package", package)
    getattr_, dir_ = lazy_exports("lazy_package", {"dedent": "textwrap"})
    package.__getattr__ = getattr_  # type: ignore[attr-defined]
    package.__dir__ = dir_  # type: ignore[method-assign]

    import textwrap

    assert package.dedent is textwrap.dedent  # type: ignore[attr-defined]
    assert "dedent" in vars(package)  # cached: the next read skips __getattr__
    assert "dedent" in dir(package)
    with pytest.raises(AttributeError, match=r"lazy_package.*nothing"):
        package.nothing  # type: ignore[attr-defined]  # noqa: B018


def test_core_package_loads_its_names_on_first_use() -> None:
    # What an entry point imports at startup: threadline itself and the deferral machinery,
    # not the run model, content capture or propagation.
    script = (
        "import sys, threadline, threadline._deferred\n"
        "heavy = {'threadline._runs', 'threadline.content', 'threadline.propagation',"
        " 'threadline._factories', 'threadline.sessions'}\n"
        "assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))\n"
        "for name in threadline.__all__:\n"
        "    getattr(threadline, name)\n"
        "assert threadline.attach_context is sys.modules['threadline._context'].attach\n"
        "assert threadline.semconv is sys.modules['threadline.semconv']\n"
        "assert set(threadline.__all__) <= set(dir(threadline))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_the_public_submodules_are_reached_from_the_package_alone() -> None:
    """``import threadline`` is enough for ``threadline.config.current()`` or
    ``threadline.cost.load_prices()``, as the docs write them."""
    script = (
        "import threadline\n"
        "assert threadline.config.current().cost is True\n"
        "assert callable(threadline.cost.load_prices)\n"
        "for name in ('content', 'propagation', 'providers', 'semconv', 'sessions'):\n"
        "    assert getattr(threadline, name).__name__ == 'threadline.' + name\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_instruments_a_framework_first_imported_by_the_integrations_own_module(
    framework: str, tmp_path: Path
) -> None:
    """The app's first import of the framework is ``from integration import Name``, whose module
    imports the framework: the hook fires while that module is half run, so its instrument
    function cannot be imported yet. It runs once the import is done."""
    package = f"{framework}_integration"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text(
        "from threadline._deferred import lazy_exports\n"
        f"__getattr__, __dir__ = lazy_exports(__name__, {{'Handler': '{package}._handler'}})\n"
    )
    (root / "_handler.py").write_text(f"import {framework}\n\nclass Handler:\n    pass\n")
    (root / "_instrument.py").write_text(
        f"from {package}._handler import Handler\n"
        "calls = []\n\n"
        "def instrument(**options):\n"
        "    calls.append(Handler)\n\n"
        "def uninstrument():\n"
        "    pass\n"
    )
    deferred = DeferredInstrumentation(
        framework,
        instrument=f"{package}._instrument:instrument",
        uninstrument=f"{package}._instrument:uninstrument",
    )
    try:
        deferred.enable({})
        handler = importlib.import_module(package).Handler
        assert sys.modules[f"{package}._instrument"].calls == [handler]
    finally:
        deferred.disable()
        for name in [name for name in sys.modules if name.startswith(package)]:
            del sys.modules[name]
