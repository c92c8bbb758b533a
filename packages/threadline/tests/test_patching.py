"""Patches: replacements of a framework's functions, undone exactly."""

from __future__ import annotations

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
