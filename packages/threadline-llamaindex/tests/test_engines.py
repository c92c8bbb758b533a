"""Chat engines and custom workflows are `invoke_workflow` spans around their model calls."""

# No `from __future__ import annotations`: LlamaIndex 0.12.0 validates step annotations as types.

import asyncio
import enum
import json
from typing import Any

import pytest
from conftest import make_llm
from llama_index.core.llms import ChatMessage

import threadline
from threadline.testing import Telemetry

try:
    from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
except ImportError:  # pragma: no cover - every supported release has workflows
    Workflow = None
else:

    class AskFlow(Workflow):  # type: ignore[misc]
        @step
        async def ask(self, ev: StartEvent) -> StopEvent:
            response = await make_llm().achat([ChatMessage(role="user", content=ev.question)])
            return StopEvent(result=response.message.content)


def test_chat_engine(telemetry: Telemetry, cassette: Any) -> None:
    from llama_index.core.chat_engine import SimpleChatEngine

    engine = SimpleChatEngine.from_defaults(llm=make_llm())
    with cassette("chat.yaml"):
        assert str(engine.chat("Capital of France?")) == "The capital of France is Paris."
    assert (
        telemetry.tree(attributes=("gen_ai.workflow.name",))
        == """\
invoke_workflow [INTERNAL]
  chat gpt-4o-mini [CLIENT]"""
    )  # LlamaIndex's own engine classes are types, not workflow names
    telemetry.assert_conformant()


@pytest.mark.skipif(Workflow is None, reason="no workflows")
def test_custom_workflow(telemetry: Telemetry, cassette: Any) -> None:
    async def run() -> str:
        return str(await AskFlow(timeout=10).run(question="Capital of France?"))

    with cassette("chat.yaml"):
        assert asyncio.run(run()) == "The capital of France is Paris."
    assert (
        telemetry.tree()
        == """\
invoke_workflow AskFlow [INTERNAL]
  chat gpt-4o-mini [CLIENT]"""
    )
    assert threadline.current_run() is None
    telemetry.assert_conformant()
    (point,) = telemetry.metric_points("gen_ai.workflow.duration")
    assert point["attributes"] == {"gen_ai.workflow.name": "AskFlow"}


@pytest.mark.skipif(Workflow is None, reason="no workflows")
def test_workflow_done_is_not_an_error(telemetry: Telemetry, cassette: Any) -> None:
    import threadline.llamaindex

    threadline.llamaindex.uninstrument()
    threadline.llamaindex.instrument(verbose=True)  # shows the internal steps too

    async def run() -> str:
        return str(await AskFlow(timeout=10).run(question="Capital of France?"))

    with cassette("chat.yaml"):
        asyncio.run(run())
    spans = telemetry.spans()
    assert telemetry.find("invoke_workflow AskFlow")
    # Early workflow releases end a run by raising WorkflowDone inside a `_done` step.
    assert [s.name for s in spans if s.status_code == "ERROR"] == []
    telemetry.assert_conformant()


def test_structured_llm_is_the_model_it_wraps(telemetry: Telemetry) -> None:
    """``llm.as_structured_llm(...)`` wraps the model in a StructuredLLM: the span is the
    wrapped model's call, with its provider, kind and usage (not the wrapper's)."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import BaseModel

    class ProviderLLM(CustomLLM):
        model: str = "gpt-4o-mini"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            usage = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
            raw = {"id": "resp-1", "choices": [{"finish_reason": "stop"}], "usage": usage}
            return CompletionResponse(text='{"city": "Paris"}', raw=raw)

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    ProviderLLM.__module__ = "llama_index.llms.openai.base"  # as if from the OpenAI package

    class City(BaseModel):
        city: str

    structured = ProviderLLM().as_structured_llm(City)
    answer = structured.chat([ChatMessage(role="user", content="Which city?")])
    assert answer.raw.city == "Paris"
    # The wrapper's call is a skipped root: the workflow around the request (see
    # test_rag.py::test_skipped_root_is_one_trace), with the model's call beneath it.
    assert telemetry.tree() == "invoke_workflow [INTERNAL]\n  text_completion gpt-4o-mini [CLIENT]"
    span = telemetry.find("text_completion gpt-4o-mini")
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.attributes["gen_ai.usage.input_tokens"] == 11
    assert span.attributes["gen_ai.usage.output_tokens"] == 5


def test_usage_in_additional_kwargs(telemetry: Telemetry) -> None:
    """LLMs without a raw response (local and custom ones) may report token counts in the
    response's ``additional_kwargs``; a response with neither reports no usage."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import Field

    class LocalLLM(CustomLLM):
        counts: dict[str, int] = Field(default_factory=dict)

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="local-7b")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="Paris", additional_kwargs=dict(self.counts))

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    LocalLLM(counts={"prompt_tokens": 9, "completion_tokens": 2}).complete("Capital?")
    LocalLLM().complete("Capital?")
    reported, silent = telemetry.spans()
    assert reported.attributes["gen_ai.usage.input_tokens"] == 9
    assert reported.attributes["gen_ai.usage.output_tokens"] == 2
    assert "gen_ai.usage.input_tokens" not in silent.attributes
    telemetry.assert_conformant()


class _GeminiFinish(str, enum.Enum):
    """google-genai's FinishReason: a str enum, kept as such in the raw response."""

    STOP = "STOP"


@pytest.mark.parametrize(
    ("raw", "reason", "output_reason"),
    [
        # LlamaIndex's google-genai LLM: the top candidate's fields, the enum as it is
        ({"finish_reason": _GeminiFinish.STOP}, "STOP", "stop"),
        ({"stopReason": "guardrail_intervened"}, "guardrail_intervened", "content_filter"),
        ({"done_reason": "length", "model": "llama3"}, "length", "length"),  # Ollama
    ],
    ids=["gemini", "bedrock-converse", "ollama"],
)
def test_finish_reason_of_providers_without_choices(
    telemetry: Telemetry, capture_content: Any, raw: Any, reason: str, output_reason: str
) -> None:
    """Gemini, Bedrock Converse and Ollama responses have no ``choices``: their finish reason is
    a field of the raw response."""
    from llama_index.core.llms import ChatResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_chat_callback

    class ProviderLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="remote", is_chat_model=True)

        @llm_chat_callback()
        def chat(self, messages: Any, **kwargs: Any) -> Any:
            return ChatResponse(message=ChatMessage(role="assistant", content="Paris"), raw=raw)

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    ProviderLLM().chat([ChatMessage(role="user", content="Capital?")])
    (span,) = telemetry.spans()
    assert span.attributes["gen_ai.response.finish_reasons"] == (reason,)
    (message,) = json.loads(span.attributes["gen_ai.output.messages"])
    assert message["finish_reason"] == output_reason
    telemetry.assert_conformant()


def test_additional_kwargs_changed_in_place(telemetry: Telemetry) -> None:
    """``additional_kwargs`` is a dict some apps change in place between calls: each call's
    request parameters are the ones it was made with."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback
    from pydantic import Field

    class TunableLLM(CustomLLM):
        additional_kwargs: dict[str, Any] = Field(default_factory=dict)

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="local-7b")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="Paris")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    llm = TunableLLM()
    llm.complete("Capital?")
    llm.additional_kwargs["top_p"] = 0.5
    llm.complete("Capital?")
    llm.additional_kwargs.clear()
    llm.complete("Capital?")
    first, tuned, cleared = telemetry.spans()
    assert "gen_ai.request.top_p" not in first.attributes
    assert tuned.attributes["gen_ai.request.top_p"] == 0.5
    assert "gen_ai.request.top_p" not in cleared.attributes
    telemetry.assert_conformant()


def test_metadata_read_once_per_model(telemetry: Telemetry, monkeypatch: Any) -> None:
    """An LLM's ``metadata`` property builds a new object on every read: threadline reads it
    once per LLM object, and again when the LLM's model field changes (a chat model and a
    completion model of one provider differ in ``is_chat_model``)."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    from threadline.llamaindex import _extract

    reads: list[str] = []  # by threadline (LlamaIndex reads metadata on its own too)
    read_metadata = _extract.metadata

    def counted(llm: Any) -> Any:
        found = read_metadata(llm)
        reads.append(found.model_name)
        return found

    monkeypatch.setattr(_extract, "metadata", counted)

    class SwitchableLLM(CustomLLM):
        model: str = "instruct-1"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model, is_chat_model=self.model.startswith("chat"))

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="ok")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    class Unnamed(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="local-7b")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="ok")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    class ModeLLM(CustomLLM):  # no model field; is_chat_model is a field (as on MockLLM)
        is_chat_model: bool = False

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="mode", is_chat_model=self.is_chat_model)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="ok")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    llm = SwitchableLLM()
    for _ in range(3):
        llm.complete("hi")
    llm.model = "chat-2"
    llm.complete("hi")
    unnamed = Unnamed()
    unnamed.complete("hi")
    unnamed.complete("hi")
    mode = ModeLLM()
    mode.complete("hi")
    mode.is_chat_model = True
    mode.complete("hi")
    assert [s.name for s in telemetry.spans()] == [
        "text_completion instruct-1",
        "text_completion instruct-1",
        "text_completion instruct-1",
        "chat chat-2",
        "text_completion local-7b",
        "text_completion local-7b",
        "text_completion mode",
        "chat mode",
    ]
    assert reads == ["instruct-1", "chat-2", "local-7b", "mode", "mode"]


def test_completion_records_its_prompt(telemetry: Telemetry, capture_content: Any) -> None:
    """LlamaIndex spans the completion callback's wrapper, ``(_self, *args, **kwargs)``: the
    prompt is its first argument or the ``prompt`` keyword, whichever way it was called."""
    from llama_index.core.llms import MockLLM

    llm = MockLLM(max_tokens=2)

    async def calls() -> None:
        await llm.acomplete("async prompt")
        async for _ in await llm.astream_complete("async stream prompt"):
            pass

    llm.complete("positional prompt")
    llm.complete(prompt="keyword prompt")
    list(llm.stream_complete("stream prompt"))
    asyncio.run(calls())
    prompts = [
        json.loads(span.attributes["gen_ai.input.messages"])
        for span in sorted(telemetry.spans(), key=lambda s: s.start_ns)
    ]
    assert [p[0]["parts"][0]["content"] for p in prompts] == [
        "positional prompt",
        "keyword prompt",
        "stream prompt",
        "async prompt",
        "async stream prompt",
    ]
    assert all(p[0]["role"] == "user" for p in prompts)
    telemetry.assert_conformant()
