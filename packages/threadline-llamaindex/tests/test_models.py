"""Model classes of their own: multi-modal LLMs, sparse embeddings, OpenAI's Responses API."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

from threadline._registry import open_runs
from threadline.testing import Telemetry

MESSAGES = [ChatMessage(role="user", content="What is in the picture?")]


def _multi_modal_llm() -> Any:
    """A multi-modal LLM (a completion model) answering "a cat", in one response or two chunks."""
    from llama_index.core.multi_modal_llms.base import MultiModalLLM, MultiModalLLMMetadata

    raw = {"choices": [{"finish_reason": "stop"}]}

    def chunks(kind: str) -> list[Any]:
        if kind == "chat":
            message = ChatMessage(role="assistant", content="a cat")
            return [ChatResponse(message=message, delta="a cat", raw=raw)]
        return [CompletionResponse(text="a", delta="a"), CompletionResponse(text="a cat", raw=raw)]

    class Vision(MultiModalLLM):
        model: str = "vision-1"
        rate_limiter: Any = None  # read by LlamaIndex's callbacks on 0.14

        @property
        def metadata(self) -> MultiModalLLMMetadata:
            return MultiModalLLMMetadata(model_name=self.model)

        def to_payload(self) -> dict[str, Any]:  # read by LlamaIndex's callbacks on 0.14
            return {"model": self.model}

        def complete(self, prompt: str, image_documents: Any, **kwargs: Any) -> Any:
            return chunks("completion")[-1]

        def stream_complete(self, prompt: str, image_documents: Any, **kwargs: Any) -> Any:
            yield from chunks("completion")

        def chat(self, messages: Any, **kwargs: Any) -> Any:
            return chunks("chat")[-1]

        def stream_chat(self, messages: Any, **kwargs: Any) -> Any:
            yield from chunks("chat")

        async def acomplete(self, prompt: str, image_documents: Any, **kwargs: Any) -> Any:
            return chunks("completion")[-1]

        async def astream_complete(self, prompt: str, image_documents: Any, **kw: Any) -> Any:
            async def stream() -> Any:
                for chunk in chunks("completion"):
                    yield chunk

            return stream()

        async def achat(self, messages: Any, **kwargs: Any) -> Any:
            return chunks("chat")[-1]

        async def astream_chat(self, messages: Any, **kwargs: Any) -> Any:
            async def stream() -> Any:
                for chunk in chunks("chat"):
                    yield chunk

            return stream()

    # as the provider packages are named: their provider's name
    Vision.__module__ = "llama_index.multi_modal_llms.vision.base"
    return Vision()


def test_multi_modal_llm_calls_are_model_calls(telemetry: Telemetry, capture_content: Any) -> None:
    """MultiModalLLM is no BaseLLM, but LlamaIndex spans its calls and fires the same events:
    each is a model call, its images part of the prompt."""
    from llama_index.core.schema import ImageDocument

    llm = _multi_modal_llm()
    image = ImageDocument(image="aGVsbG8=", image_mimetype="image/png")
    assert llm.complete("What is it?", [image]).text == "a cat"
    assert [chunk.delta for chunk in llm.stream_complete("What is it?", [image])] == ["a", None]
    assert llm.chat(MESSAGES).message.content == "a cat"

    async def read() -> list[Any]:
        completion = await llm.acomplete("What is it?", image_documents=[image])
        chunks = [chunk async for chunk in await llm.astream_chat(MESSAGES)]
        return [completion.text, chunks[-1].delta]

    assert asyncio.run(read()) == ["a cat", "a cat"]
    attributes = ("gen_ai.request.stream", "gen_ai.response.finish_reasons")
    assert {span.attributes["gen_ai.provider.name"] for span in telemetry.spans()} == {"vision"}
    assert telemetry.tree(attributes=attributes).split("\n---\n") == [
        "text_completion vision-1 [CLIENT] gen_ai.response.finish_reasons=['stop']",
        "text_completion vision-1 [CLIENT] gen_ai.request.stream=True "
        "gen_ai.response.finish_reasons=['stop']",
        "chat vision-1 [CLIENT] gen_ai.response.finish_reasons=['stop']",
        "text_completion vision-1 [CLIENT] gen_ai.response.finish_reasons=['stop']",
        "chat vision-1 [CLIENT] gen_ai.request.stream=True gen_ai.response.finish_reasons=['stop']",
    ]
    first = telemetry.spans()[0]
    (message,) = json.loads(first.attributes["gen_ai.input.messages"])
    assert message["parts"] == [
        {"type": "text", "content": "What is it?"},
        {"type": "blob", "modality": "image", "content": "aGVsbG8=", "mime_type": "image/png"},
    ]
    assert len(open_runs) == 0
    telemetry.assert_conformant()


def test_sparse_embeddings_are_embeddings_calls(telemetry: Telemetry) -> None:
    """BaseSparseEmbedding is no BaseEmbedding, but its calls are spanned as theirs are."""
    sparse = pytest.importorskip("llama_index.core.sparse_embeddings.mock_sparse_embedding")
    model = sparse.MockSparseEmbedding()
    assert model.get_query_embedding("q") == {0: 1.0}
    assert model.get_text_embedding_batch(["a", "b"]) == [{0: 1.0}, {0: 1.0}]
    assert asyncio.run(model.aget_text_embedding("a")) == {0: 1.0}

    class Splade(sparse.MockSparseEmbedding):  # type: ignore[misc,name-defined]
        pass

    Splade.__module__ = "llama_index.sparse_embeddings.splade.base"  # a provider package's
    Splade(model_name="splade-v3").get_query_embedding("q")
    # no dimension count: a sparse vector's indices are its own
    attributes = ("gen_ai.provider.name", "gen_ai.embeddings.dimension.count")
    assert telemetry.tree(attributes=attributes).split("\n---\n") == [
        *["embeddings unknown [CLIENT] gen_ai.provider.name=llama_index"] * 3,
        "embeddings splade-v3 [CLIENT] gen_ai.provider.name=splade",
    ]
    telemetry.assert_conformant()


def _responses_llm(outcome: str, **kwargs: Any) -> Any:
    """OpenAI's Responses API LLM against an in-process transport whose response ends as
    ``outcome`` says (a stream's last event carries the whole response)."""
    module = pytest.importorskip("llama_index.llms.openai")
    if not hasattr(module, "OpenAIResponses"):
        pytest.skip("this llama-index-llms-openai has no Responses API LLM")

    def response() -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
        }
        if outcome == "tool_call":
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"}
            item.update(arguments="{}", status="completed")
        status, details = "completed", None
        if outcome in ("max_output_tokens", "content_filter"):
            status, details = "incomplete", {"reason": outcome}
        usage = {
            "input_tokens": 5,
            "output_tokens": 2,
            "total_tokens": 7,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        return {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "gpt-4o-mini-2024-07-18",
            "status": status,
            "incomplete_details": details,
            "output": [item],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "usage": usage,
        }

    def answer(request: httpx.Request) -> httpx.Response:
        whole = response()
        if not json.loads(request.content).get("stream"):
            return httpx.Response(200, json=whole)
        ends = "response.completed" if whole["status"] == "completed" else "response.incomplete"
        events = [
            {"type": "response.created", "sequence_number": 0, "response": whole},
            {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_1"},
            {"type": ends, "sequence_number": 2, "response": whole},
        ]
        events[0]["response"] = dict(whole, status="in_progress", output=[], usage=None)
        events[1].update(output_index=0, content_index=0, delta="Hi", logprobs=[])
        text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    return module.OpenAIResponses(
        model="gpt-4o-mini",
        api_key="sk-test",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("outcome", "raw", "reason"),
    [
        ("stop", "stop", "stop"),
        ("tool_call", "tool_call", "tool_call"),
        ("max_output_tokens", "max_output_tokens", "length"),
        ("content_filter", "content_filter", "content_filter"),
    ],
)
def test_responses_api_finish_reason_usage_and_response(
    telemetry: Telemetry, capture_content: Any, outcome: str, raw: str, reason: str
) -> None:
    """The Responses API reports a status, not a finish reason: a completed response stopped
    or called tools, an incomplete one's reason is recorded as given (as LangChain's
    integration records it), and its output message takes the conventions' value. A stream's
    chunks are its events: its last one carries the response, with its id, model and usage."""
    llm = _responses_llm(outcome)
    llm.chat(MESSAGES)
    assert [chunk.delta for chunk in llm.stream_chat(MESSAGES)][1] == "Hi"
    attributes = (
        "gen_ai.response.finish_reasons",
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    )
    facts = (
        f"gen_ai.response.finish_reasons=['{raw}'] gen_ai.response.id=resp_1 "
        "gen_ai.response.model=gpt-4o-mini-2024-07-18 gen_ai.usage.input_tokens=5 "
        "gen_ai.usage.output_tokens=2"
    )
    assert (
        telemetry.tree(attributes=attributes, show_kind=False).split("\n---\n")
        == [f"chat gpt-4o-mini {facts}"] * 2
    )
    for span in telemetry.spans():
        (message,) = json.loads(span.attributes["gen_ai.output.messages"])
        assert message["finish_reason"] == reason
    telemetry.assert_conformant()


def test_responses_api_output_limit_is_the_max_tokens(telemetry: Telemetry) -> None:
    """The Responses API LLM's limit is its ``max_output_tokens`` (a field, or a call's)."""
    llm = _responses_llm("stop", max_output_tokens=64)
    llm.chat(MESSAGES)
    llm.chat(MESSAGES, max_output_tokens=32)
    _responses_llm("stop").chat(MESSAGES)
    spans = telemetry.spans()
    assert [span.attributes.get("gen_ai.request.max_tokens") for span in spans] == [64, 32, None]
