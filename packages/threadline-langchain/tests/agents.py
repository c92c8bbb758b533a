"""Agent builders and tools shared by the tests (works with langchain 1.x and langgraph 0.x)."""

from __future__ import annotations

import re
from typing import Any

from conftest import ScriptedChatModel, usage
from langchain_core.messages import AIMessage, ToolCall
from langchain_core.tools import tool


@tool
def get_weather(city: str) -> str:
    """Get the weather in a city."""
    return f"sunny in {city}"


@tool
def get_time(city: str) -> str:
    """Get the local time in a city."""
    return f"noon in {city}"


def build_agent(model: Any, tools: list[Any], name: str = "support") -> Any:
    """`create_agent` (langchain 1.x) or the prebuilt ReAct agent (langgraph 0.x)."""
    try:
        from langchain.agents import create_agent
    except ImportError:
        from langgraph.prebuilt import create_react_agent

        return create_react_agent(model, tools).with_config(run_name=name)
    return create_agent(model, tools, name=name)


def two_tool_model(**kwargs: Any) -> ScriptedChatModel:
    return ScriptedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    ToolCall(name="get_weather", args={"city": "Paris"}, id="call_weather"),
                    ToolCall(name="get_time", args={"city": "Paris"}, id="call_time"),
                ],
                usage_metadata=usage(40, 30, cache_read=8, cache_creation=2),  # type: ignore[arg-type]
            ),
            AIMessage(
                content="It is sunny and noon in Paris.",
                usage_metadata=usage(90, 10, reasoning=4),  # type: ignore[arg-type]
            ),
        ],
        **kwargs,
    )


_TOOL_LINE = re.compile(r"^(\s*)execute_tool ")


def tools_sorted(tree: str) -> str:
    """Parallel tool calls start in any order: sort each run of sibling tool lines by name."""
    lines = tree.split("\n")
    out: list[str] = []
    group: list[str] = []
    indent: str | None = None
    for line in [*lines, ""]:
        match = _TOOL_LINE.match(line)
        if match and (indent is None or match.group(1) == indent):
            group.append(line)
            indent = match.group(1)
            continue
        out.extend(sorted(group))
        group, indent = [], None
        if match:
            group, indent = [line], match.group(1)
        else:
            out.append(line)
    return "\n".join(out[:-1])
