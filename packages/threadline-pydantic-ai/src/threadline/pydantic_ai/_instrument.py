"""``instrument()`` at work: every agent run gets :class:`Tracing`, whenever the agent was made.

Pydantic AI has no global capability registry. An agent made while instrumentation is on gets
one ``Tracing`` among its own capabilities (``Agent.__init__`` is patched): Pydantic AI then
combines and sorts its capability chain once, at construction. Adding a capability per run
makes it do that on every run, which costs about a third of what a pass-through capability
costs a run in all. An agent made before ``instrument()`` gets ``Tracing`` per run through the
patched ``Agent.iter`` (which ``run``, ``run_sync``, ``run_stream`` and wrapper agents all go
through): as a per-run capability where ``iter`` takes them, else through the agent's own
root-capability override for the start of the run (older 1.x releases).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability
from threadline._failopen import report
from threadline.pydantic_ai._capability import Tracing, instrumenting

__all__ = ["instrument_agents", "uninstrument_agents"]

_lock = threading.Lock()
_original_iter: Any = None
_original_init: Any = None
# As this module found them: it is imported once, by instrument(), before it patches them.
_PYDANTIC_INIT: Any = Agent.__dict__["__init__"]
_PYDANTIC_ITER: Any = Agent.__dict__["iter"]
_RUN_CAPABILITIES = "capabilities" in inspect.signature(Agent.iter).parameters
_AGENT_CAPABILITIES = "capabilities" in inspect.signature(Agent.__init__).parameters
# Pydantic AI 1.71-1.75: a capability learns its agent only from whoever gave it to the agent.
_RUN_CONTEXT_HAS_AGENT = "agent" in getattr(RunContext, "__dataclass_fields__", {})


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


def _traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
    # A call that raced uninstrument(), or reached this wrapper through someone who kept it,
    # runs Pydantic AI's own, unchanged.
    original = _original_init or _PYDANTIC_INIT
    call_kwargs = kwargs
    try:
        given = kwargs.get("capabilities")
        if instrumenting[0] and (
            given is None
            or (isinstance(given, (list, tuple)) and not any(_has_tracing(c) for c in given))
        ):
            tracing = Tracing()
            tracing._by_instrument = True
            if not _RUN_CONTEXT_HAS_AGENT:
                tracing._agent = self
            call_kwargs = {**kwargs, "capabilities": [*(given or ()), tracing]}
    except Exception as error:  # noqa: BLE001
        report("threadline.pydantic_ai.init", error)
        call_kwargs = kwargs
    original(self, *args, **call_kwargs)


def _traced_iter(self: Any, *args: Any, **kwargs: Any) -> Any:
    original = _original_iter or _PYDANTIC_ITER  # as in _traced_init
    # Only our own decision is guarded: the user's call runs once, outside the try, so its
    # errors (a bad argument, say) reach the caller unchanged and are not reported as ours.
    call_kwargs = kwargs
    with_override = False
    try:
        if instrumenting[0] and not _has_tracing(self._root_capability):
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
    global _original_iter, _original_init
    with _lock:
        if _original_iter is not None:
            return
        _original_iter = Agent.__dict__["iter"]
        Agent.iter = _traced_iter  # type: ignore[method-assign]
        if _AGENT_CAPABILITIES:
            _original_init = Agent.__dict__["__init__"]
            Agent.__init__ = functools.wraps(_original_init)(_traced_init)  # type: ignore[method-assign]
        instrumenting[0] = True


def uninstrument_agents() -> None:
    """Undo :func:`instrument_agents`. Idempotent. Agents made meanwhile keep their Tracing,
    which records nothing until the next :func:`instrument_agents`."""
    global _original_iter, _original_init
    with _lock:
        if _original_iter is None:
            return
        instrumenting[0] = False
        Agent.iter = _original_iter  # type: ignore[method-assign]
        _original_iter = None
        if _original_init is not None:
            Agent.__init__ = _original_init  # type: ignore[method-assign]
            _original_init = None
