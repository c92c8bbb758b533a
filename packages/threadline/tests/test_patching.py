"""Patches: replacements of a framework's functions, undone exactly."""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable
from typing import Any

from threadline._patching import Patches


class Framework:
    def run(self) -> str:
        return "run"

    def stop(self) -> str:
        return "stop"


def test_replace_and_undo() -> None:
    original_run, original_stop = Framework.run, Framework.stop
    patches = Patches()

    def traced(method: Any) -> Any:
        def wrapper(self: Any) -> str:
            return "traced " + method(self)

        return wrapper

    patches.replace(Framework, "run", traced)
    patches.replace_in(__name__, "Framework", "stop", traced)
    assert (Framework().run(), Framework().stop(), len(patches)) == ("traced run", "traced stop", 2)
    patches.undo()
    assert (Framework.run, Framework.stop, len(patches)) == (original_run, original_stop, 0)


def test_undo_leaves_a_later_patch_in_place() -> None:
    original = Framework.run
    patches = Patches()
    patches.replace(Framework, "run", lambda method: lambda self: "ours")
    later = lambda self: "someone else's"  # noqa: E731 - patched on top of ours
    Framework.run = later  # type: ignore[method-assign]
    try:
        patches.undo()
        assert Framework.run is later
    finally:
        Framework.run = original  # type: ignore[method-assign]


def test_a_deprecated_function_still_warns_at_the_callers_line() -> None:
    """A function marked ``@deprecated`` warns from its wrapper, naming its caller: patched,
    the caller would be the replacement (whose warnings the default filters hide). The
    replacement wraps the function inside and warns as the wrapper did, naming the app's
    line; a function that is only wrapped, or marked without a runtime warning, is left whole."""
    from typing_extensions import deprecated

    module = types.ModuleType("deprecating")

    @deprecated("use open_other()")
    def open_old(value: int) -> int:
        return value

    @deprecated("static checkers only", category=None)
    def quiet(value: int) -> int:
        return value

    def decorated(value: int) -> int:
        return value

    @functools.wraps(decorated)
    def wrapped(value: int) -> int:
        return decorated(value) + 1

    module.open_old, module.quiet, module.wrapped = open_old, quiet, wrapped  # type: ignore[attr-defined]
    given: dict[str, Any] = {}

    def make(name: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            given[name] = original
            return lambda value: original(value) * 10

        return wrap

    patches = Patches()
    for name in ("open_old", "quiet", "wrapped"):
        patches.replace(module, name, make(name))
    assert given == {"open_old": open_old.__wrapped__, "quiet": quiet, "wrapped": wrapped}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert module.open_old(2) == 20
        assert module.quiet(2) == 20
        assert module.wrapped(2) == 30
    assert [(str(w.message), w.category, w.filename) for w in caught] == [
        ("use open_other()", DeprecationWarning, __file__)
    ]
    patches.undo()
    assert (module.open_old, module.quiet, module.wrapped) == (open_old, quiet, wrapped)


def test_only_a_deprecated_plain_function_is_unwrapped() -> None:
    """A deprecated classmethod, a method patched on an instance and a deprecated class's
    ``__new__`` reach ``make`` as they are, and behave as before once patched."""
    from typing_extensions import deprecated

    class Old:
        @classmethod
        @deprecated("cm is old")
        def cm(cls, value: int) -> tuple[str, int]:
            return cls.__name__, value

        @deprecated("m is old")
        def m(self, value: int) -> int:
            return value

    @deprecated("Gone is old")
    class Gone:
        def __init__(self, value: int) -> None:
            self.value = value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # subclassing it warns, as it should

        class Sub(Gone):  # type: ignore[misc]
            pass

    def through(original: Any) -> Any:
        return lambda *args, **kwargs: original(*args, **kwargs)

    instance = Old()
    patches = Patches()
    patches.replace(Old, "cm", through)
    patches.replace(instance, "m", through)
    patches.replace(Gone, "__new__", lambda original: original)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Old.cm(1) == ("Old", 1)
        assert instance.m(2) == 2
        assert Sub(3).value == 3  # a subclass of a deprecated class does not warn
    assert [str(w.message) for w in caught] == ["cm is old", "m is old"]
    patches.undo()
