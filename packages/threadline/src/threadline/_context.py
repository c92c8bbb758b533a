"""Attaching and detaching OpenTelemetry contexts without ever leaving one attached or logging
"Failed to detach context".

``opentelemetry.context.detach`` logs an error when a token is reset from another thread or
task (the token belongs to the ``contextvars.Context`` it was created in). Callback-driven
frameworks end runs wherever they like, so threadline resets the token itself and treats a
foreign context as "nothing to undo here".

Every run reads, sets and resets the current context. With the API's default runtime context
(one ``ContextVar``) these go to the variable directly: the API's functions add two Python
frames around each of those single operations. Any other runtime context (chosen with
``OTEL_PYTHON_CONTEXT``) is used through the API.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from opentelemetry import context as otel_context
from opentelemetry.context import _RUNTIME_CONTEXT, Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext


def _default_variable() -> ContextVar[Context] | None:
    if type(_RUNTIME_CONTEXT) is not ContextVarsRuntimeContext:
        return None
    variable = getattr(_RUNTIME_CONTEXT, "_current_context", None)
    return variable if isinstance(variable, ContextVar) else None


_VARIABLE = _default_variable()

#: The current context (``opentelemetry.context.get_current``).
current: Callable[[], Context] = (
    _VARIABLE.get if _VARIABLE is not None else otel_context.get_current
)
#: Make a context current (``opentelemetry.context.attach``); undo with :func:`detach`.
set_current: Callable[[Context], Token[Context]] = (
    _VARIABLE.set if _VARIABLE is not None else otel_context.attach
)
_reset: Callable[[Token[Context]], None] = (
    _VARIABLE.reset if _VARIABLE is not None else _RUNTIME_CONTEXT.detach
)


def attach(ctx: Context) -> Token[Context]:
    """Make ``ctx`` current; undo with :func:`detach` (exposed as
    ``threadline.attach_context``)."""
    return set_current(ctx)


def detach(token: Token[Context]) -> bool:
    """Reset ``token``; returns False (silently) when it belongs to another context or was
    already used (exposed as ``threadline.detach_context``)."""
    try:
        _reset(token)
    except (ValueError, RuntimeError):
        return False
    return True
