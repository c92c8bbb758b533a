"""Helpers shared by the cross-framework tests that mix LangChain/LangGraph, LlamaIndex and
Pydantic AI in one process."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

import threadline.langchain
import threadline.llamaindex
import threadline.pydantic_ai


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    """The three frameworks instrumented for each test (autouse where imported)."""
    threadline.langchain.instrument()
    threadline.llamaindex.instrument()
    threadline.pydantic_ai.instrument()
    yield
    threadline.pydantic_ai.uninstrument()
    threadline.llamaindex.uninstrument()
    threadline.langchain.uninstrument()


class State(TypedDict):
    out: Annotated[list[str], operator.add]


def one_node_graph(name: str, node: Any) -> Any:
    """A compiled graph named ``name`` that runs ``node`` once."""
    graph = StateGraph(State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    return graph.compile(name=name)
