"""threadline integration for Pydantic AI.

Per agent: ``Agent(..., capabilities=[Tracing()])``. For every agent (also those created earlier):
``threadline.pydantic_ai.instrument()``. Either way an agent run becomes an
``invoke_agent {agent}`` span with ``chat {model}`` and ``execute_tool {tool}`` children.
"""

from typing import TYPE_CHECKING

from threadline._deferred import lazy_exports
from threadline.pydantic_ai._instrumentor import PydanticAIInstrumentor, instrument, uninstrument

if TYPE_CHECKING:
    from threadline.pydantic_ai._capability import DuplicateTelemetryWarning, Tracing

__all__ = [
    "DuplicateTelemetryWarning",
    "PydanticAIInstrumentor",
    "Tracing",
    "instrument",
    "uninstrument",
]

# Pydantic AI is imported on first use of these, not by importing this package (which
# ``opentelemetry-instrument`` does at startup whether or not the application uses it).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DuplicateTelemetryWarning": "threadline.pydantic_ai._capability",
        "Tracing": "threadline.pydantic_ai._capability",
    },
)
