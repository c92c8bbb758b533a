"""A bug in reading what LangChain reports (a conversion of ours raising) costs that part of
the telemetry only: every span still starts and ends with its callbacks, under its parent."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from agents import build_agent, get_time, get_weather, tools_sorted, two_tool_model
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

import threadline
from threadline import semconv
from threadline.langchain import _convert

AGENT_TREE = """\
invoke_agent support [INTERNAL]
  chat scripted-1 [CLIENT]
  execute_tool get_time [INTERNAL]
  execute_tool get_weather [INTERNAL]
  chat scripted-1 [CLIENT]"""


def _broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug in threadline")


@pytest.mark.parametrize(
    ("conversion", "lost", "kept"),
    [
        # on every model end
        ("response_facts", semconv.GEN_AI_USAGE_INPUT_TOKENS, semconv.GEN_AI_OUTPUT_MESSAGES),
        ("output_messages", semconv.GEN_AI_OUTPUT_MESSAGES, semconv.GEN_AI_USAGE_INPUT_TOKENS),
        # on every model start
        ("input_messages", semconv.GEN_AI_INPUT_MESSAGES, semconv.GEN_AI_TOOL_DEFINITIONS),
        ("tool_definitions", semconv.GEN_AI_TOOL_DEFINITIONS, semconv.GEN_AI_INPUT_MESSAGES),
        # on every tool end
        ("tool_result", semconv.GEN_AI_TOOL_CALL_RESULT, semconv.GEN_AI_TOOL_CALL_ARGUMENTS),
    ],
)
def test_a_conversion_that_raises_loses_its_attribute_not_the_span(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    conversion: str,
    lost: str,
    kept: str,
) -> None:
    monkeypatch.setattr(_convert, conversion, _broken)
    caplog.set_level(logging.CRITICAL, logger="threadline")
    agent = build_agent(two_tool_model(), [get_weather, get_time])
    result = agent.invoke({"messages": [("user", "Weather and time in Paris?")]}, config=config)
    assert result["messages"][-1].content == "It is sunny and noon in Paris."
    # every span ended with its callbacks, before the call returned, none left to the reaper
    assert tools_sorted(telemetry.tree()) == AGENT_TREE
    assert len(threadline.open_runs) == 0
    spans = telemetry.spans()
    assert not [s for s in spans if semconv.THREADLINE_ABANDONED in s.attributes]
    assert not [s for s in spans if lost in s.attributes]
    # what is read beside it is still there, on every span of its kind
    holders = "execute_tool" if kept == semconv.GEN_AI_TOOL_CALL_ARGUMENTS else "chat"
    assert all(kept in s.attributes for s in spans if s.name.startswith(holders))
    assert all(s.status_code == "UNSET" for s in spans)
    # what the broken conversion does not read is still there
    chat = next(s for s in spans if s.name == "chat scripted-1")
    assert chat.attributes[semconv.GEN_AI_REQUEST_MODEL] == "scripted-1"
    tool = telemetry.find("execute_tool get_weather")
    assert tool.attributes[semconv.GEN_AI_TOOL_CALL_ID] == "call_weather"
    if conversion != "response_facts":  # content lost, not the usage read beside it
        agent_span = telemetry.find("invoke_agent support")
        assert agent_span.attributes[semconv.GEN_AI_USAGE_INPUT_TOKENS] == 130


class _Cities(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content="Paris is sunny.")]


def test_documents_that_cannot_be_read_leave_the_retrieval_span_ended(
    telemetry: Any,
    config: dict[str, Any],
    capture_content: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_convert, "documents", _broken)
    caplog.set_level(logging.CRITICAL, logger="threadline")
    assert _Cities().invoke("Paris?", config=config)[0].page_content == "Paris is sunny."
    (span,) = telemetry.spans()
    assert span.name == "retrieval _Cities"
    assert span.attributes[semconv.GEN_AI_RETRIEVAL_QUERY_TEXT] == "Paris?"
    assert semconv.GEN_AI_RETRIEVAL_DOCUMENTS not in span.attributes
    assert semconv.THREADLINE_ABANDONED not in span.attributes
    assert len(threadline.open_runs) == 0
