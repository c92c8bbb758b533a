"""threadline integration for Pydantic AI.

Per agent: ``Agent(..., capabilities=[Tracing()])``. For every agent (also those created earlier):
``threadline.pydantic_ai.instrument()``. Either way an agent run becomes an
``invoke_agent {agent}`` span with ``chat {model}`` and ``execute_tool {tool}`` children.
"""

from threadline.pydantic_ai._capability import DuplicateTelemetryWarning, Tracing
from threadline.pydantic_ai._instrumentor import PydanticAIInstrumentor, instrument, uninstrument

__all__ = [
    "DuplicateTelemetryWarning",
    "PydanticAIInstrumentor",
    "Tracing",
    "instrument",
    "uninstrument",
]
