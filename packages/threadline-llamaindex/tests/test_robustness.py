"""The integration never breaks the application and keeps no state once calls are done."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import make_index, make_llm
from llama_index.core.llms import ChatMessage

import threadline.llamaindex
from threadline.llamaindex import _extract
from threadline.llamaindex._handler import Tracker
from threadline.testing import Telemetry

MESSAGES = [ChatMessage(role="user", content="Say hello")]


def _tracker() -> Tracker:
    installed = threadline.llamaindex._instrument._installed
    assert installed is not None
    return installed[0]._tracker


def test_internal_error_does_not_reach_the_app(
    telemetry: Telemetry, cassette: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in threadline")

    monkeypatch.setattr(_extract, "llm_facts", broken)
    with caplog.at_level(logging.DEBUG, logger="threadline"), cassette("chat.yaml"):
        response = make_llm().chat(MESSAGES)
    assert response.message.content == "The capital of France is Paris."
    assert telemetry.spans() == []  # that call is simply not traced
    assert any("llamaindex.span_enter" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream_chat"])
def test_unreadable_response_still_ends_the_span(
    telemetry: Telemetry,
    cassette: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    stream: bool,
) -> None:
    """Reading the response fails (our bug): the span ends anyway, without what the response
    would have told, the application gets its answer, and the failure is logged."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in threadline")

    monkeypatch.setattr(_extract, "usage_of", broken)
    llm = make_llm()
    with caplog.at_level(logging.DEBUG, logger="threadline"):
        if stream:
            with cassette("stream_chat.yaml"):
                text = "".join(chunk.delta or "" for chunk in llm.stream_chat(MESSAGES))
        else:
            with cassette("chat.yaml"):
                text = str(llm.chat(MESSAGES).message.content)
    assert text == ("Hello streamed world" if stream else "The capital of France is Paris.")
    (span,) = telemetry.spans()
    assert span.name == "chat gpt-4o-mini"
    assert "gen_ai.usage.input_tokens" not in span.attributes
    hook = "llamaindex.event" if stream else "llamaindex.span_exit"
    assert any(hook in r.getMessage() for r in caplog.records)
    tracker = _tracker()
    assert (len(tracker.runs), len(tracker.streams)) == (0, 0)


def test_no_state_left_after_calls(telemetry: Telemetry, cassette: Any) -> None:
    with cassette("rag_query.yaml"):
        make_index().as_query_engine(llm=make_llm()).query("What is the capital of France?")
    tracker = _tracker()
    assert (len(tracker.runs), len(tracker.streams), tracker.nodes, tracker.stream_finish) == (
        0,
        0,
        {},
        {},
    )


def test_concurrent_threads_get_separate_trees(telemetry: Telemetry, cassette: Any) -> None:
    from llama_index.core.llms import MockLLM

    llm = MockLLM(max_tokens=2)

    def one(i: int) -> str:
        with threadline.invoke_workflow(f"job-{i}"):
            return str(llm.chat([ChatMessage(role="user", content=f"q{i}")]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(40)))
    spans = telemetry.spans()
    by_id = {span.span_id: span for span in spans}
    chats = [span for span in spans if span.name == "chat unknown"]
    assert len(chats) == 40
    parents = sorted(by_id[chat.parent_span_id].name for chat in chats)
    assert parents == sorted(f"invoke_workflow job-{i}" for i in range(40))
    tracker = _tracker()
    assert (len(tracker.runs), tracker.nodes) == (0, {})
