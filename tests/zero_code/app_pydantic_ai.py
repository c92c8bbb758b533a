"""A Pydantic AI agent with a tool, on Pydantic AI's TestModel. No threadline import: run it under
``opentelemetry-instrument`` and the ``pydantic_ai`` entry point traces it."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

agent = Agent(TestModel(custom_output_text="Sunny."), name="support")


@agent.tool_plain
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


if __name__ == "__main__":
    result = agent.run_sync("What's the weather in Paris?")
    assert result.output == "Sunny."
