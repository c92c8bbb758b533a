"""LangGraph helpers shared by the cross-framework tests."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class State(TypedDict):
    out: Annotated[list[str], operator.add]


def one_node_graph(name: str, node: Any) -> Any:
    """A compiled graph named ``name`` that runs ``node`` once."""
    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    return graph.compile(name=name)
