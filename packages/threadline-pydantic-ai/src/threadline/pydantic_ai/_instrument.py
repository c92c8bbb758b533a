"""``instrument()`` at work: every agent run gets :class:`Tracing`, whenever the agent was made.

Pydantic AI has no global capability registry, so ``Agent.iter`` (which ``run``, ``run_sync``,
``run_stream`` and wrapper agents all go through) is patched. Releases whose ``iter`` takes
per-run ``capabilities`` get ``Tracing`` that way; older 1.x releases get it through the agent's
own root-capability override for the start of the run.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability
from threadline._failopen import report
from threadline.pydantic_ai._capability import Tracing

__all__ = ["instrument_agents", "uninstrument_agents"]

_lock = threading.Lock()
_original_iter: Any = None
_RUN_CAPABILITIES = "capabilities" in inspect.signature(Agent.iter).parameters


def _has_tracing(capability: Any, depth: int = 0) -> bool:
    if isinstance(capability, Tracing):
        return True
    if depth > 8:
        return False
    children = getattr(capability, "capabilities", None)
    if isinstance(children, (list, tuple)):
        return any(_has_tracing(child, depth + 1) for child in children)
    wrapped = getattr(capability, "wrapped", None)
    return isinstance(wrapped, AbstractCapability) and _has_tracing(wrapped, depth + 1)


def _traced_iter(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _original_iter
    # Only our own decision is guarded: the user's call runs once, outside the try, so its
    # errors (a bad argument, say) reach the caller unchanged and are not reported as ours.
    call_kwargs = kwargs
    with_override = False
    try:
        if not _has_tracing(self._root_capability):
            if _RUN_CAPABILITIES:
                extra = kwargs.get("capabilities")
                if extra is None or not any(_has_tracing(cap) for cap in extra):
                    call_kwargs = {**kwargs, "capabilities": [*(extra or ()), Tracing()]}
            else:
                with_override = True
    except Exception as error:  # noqa: BLE001
        report("threadline.pydantic_ai.iter", error)
        call_kwargs, with_override = kwargs, False
    if with_override:
        return _iter_with_override(original, self, args, call_kwargs)
    return original(self, *args, **call_kwargs)


@asynccontextmanager
async def _iter_with_override(
    original: Any, agent: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> AsyncIterator[Any]:
    # 1.x without per-run capabilities: for the start of this run only, the agent's root
    # capability is Tracing + its own (the run reads the override once, while it starts).
    from pydantic_ai import _utils

    override_var = agent._override_root_capability
    current = override_var.get()
    base = current.value if current is not None else agent._root_capability
    tracing = Tracing()
    tracing._agent = agent
    token = override_var.set(_utils.Some(CombinedCapability([tracing, base])))
    reset = False
    try:
        async with original(agent, *args, **kwargs) as run:
            override_var.reset(token)
            reset = True
            yield run
    finally:
        if not reset:
            override_var.reset(token)


def instrument_agents() -> None:
    """Give every agent run Tracing. Idempotent."""
    global _original_iter
    with _lock:
        if _original_iter is not None:
            return
        _original_iter = Agent.__dict__["iter"]
        Agent.iter = _traced_iter  # type: ignore[method-assign]


def uninstrument_agents() -> None:
    """Undo :func:`instrument_agents`. Idempotent."""
    global _original_iter
    with _lock:
        if _original_iter is None:
            return
        Agent.iter = _original_iter  # type: ignore[method-assign]
        _original_iter = None
