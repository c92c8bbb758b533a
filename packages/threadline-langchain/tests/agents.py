"""Agent builders and tools shared by the tests (works with langchain 1.x and langgraph 0.x)."""

from __future__ import annotations

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


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blocks(lines: list[str]) -> list[list[str]]:
    """Split sibling lines (same indentation) into blocks: each head with its descendants."""
    blocks: list[list[str]] = []
    for line in lines:
        if blocks and _indent(line) > _indent(blocks[-1][0]):
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _canonical(lines: list[str]) -> list[str]:
    out: list[str] = []
    tools: list[list[str]] = []
    for block in _blocks(lines):
        block = [block[0], *_canonical(block[1:])]
        if block[0].lstrip().startswith("execute_tool "):
            tools.append(block)
            continue
        for tool_block in sorted(tools):
            out.extend(tool_block)
        tools = []
        out.extend(block)
    for tool_block in sorted(tools):
        out.extend(tool_block)
    return out


def tools_sorted(tree: str) -> str:
    """Parallel tool calls start in any order: sort each run of sibling tool spans (with their
    subtrees) by name."""
    if not tree:
        return tree
    return "\n".join(_canonical(tree.split("\n")))
