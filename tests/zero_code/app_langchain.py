"""A LangGraph agent on LangChain's fake chat model. No threadline import: run it under
``opentelemetry-instrument`` and the ``threadline_langchain`` entry point traces it."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolCall
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


class ToolCallingFakeModel(GenericFakeChatModel):
    """LangChain's fake chat model, accepting tools (its scripted messages call them)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


model = ToolCallingFakeModel(
    messages=iter(
        [
            AIMessage(
                content="",
                tool_calls=[ToolCall(name="get_weather", args={"city": "Paris"}, id="call_1")],
                usage_metadata={"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
            ),
            AIMessage(
                content="It is sunny in Paris.",
                usage_metadata={"input_tokens": 40, "output_tokens": 7, "total_tokens": 47},
            ),
        ]
    )
).bind_tools([get_weather])


def agent(state: MessagesState) -> dict[str, Any]:
    return {"messages": [model.invoke(state["messages"])]}


graph = StateGraph(MessagesState)
graph.add_node("agent", agent)
graph.add_node("tools", ToolNode([get_weather]))
graph.add_edge(START, "agent")
graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
graph.add_edge("tools", "agent")
app = graph.compile(name="weather-agent")

if __name__ == "__main__":
    result = app.invoke({"messages": [HumanMessage("What's the weather in Paris?")]})
    assert result["messages"][-1].content == "It is sunny in Paris."
