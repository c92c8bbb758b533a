"""Reading provider responses: usage (cache and reasoning tokens too), finish reasons, providers."""

from __future__ import annotations

from typing import Any

import pytest

import threadline
from threadline.llamaindex import _extract
from threadline.testing import Telemetry


@pytest.mark.parametrize(
    ("raw", "usage"),
    [
        pytest.param(
            {
                "usage": {
                    "prompt_tokens": 120,
                    "completion_tokens": 8,
                    "prompt_tokens_details": {"cached_tokens": 64},
                    "completion_tokens_details": {"reasoning_tokens": 3},
                }
            },
            threadline.Usage(120, 8, cache_read_input_tokens=64, reasoning_output_tokens=3),
            id="openai-chat",
        ),
        pytest.param(
            {
                "usage": {
                    "input_tokens": 50,
                    "output_tokens": 9,
                    "input_tokens_details": {"cached_tokens": 10},
                    "output_tokens_details": {"reasoning_tokens": 4},
                }
            },
            threadline.Usage(50, 9, cache_read_input_tokens=10, reasoning_output_tokens=4),
            id="openai-responses",
        ),
        pytest.param(
            {
                "usage": {
                    "input_tokens": 20,
                    "output_tokens": 7,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 30,
                }
            },
            # Anthropic counts cached input apart; the conventions' input_tokens include it.
            threadline.Usage(150, 7, cache_read_input_tokens=100, cache_write_input_tokens=30),
            id="anthropic",
        ),
        pytest.param(
            {
                "usage_metadata": {
                    "prompt_token_count": 40,
                    "candidates_token_count": 5,
                    "cached_content_token_count": 16,
                    "thoughts_token_count": 2,
                }
            },
            threadline.Usage(40, 7, cache_read_input_tokens=16, reasoning_output_tokens=2),
            id="gemini",
        ),
        pytest.param(
            {"usage": {"inputTokens": 11, "outputTokens": 6}},
            threadline.Usage(11, 6),
            id="bedrock-converse",
        ),
        pytest.param({"choices": []}, None, id="no-usage"),
    ],
)
def test_usage_of(raw: Any, usage: threadline.Usage | None) -> None:
    assert _extract.usage_of(raw) == usage


def test_finish_reasons() -> None:
    assert _extract.finish_reason_of({"choices": [{"finish_reason": "tool_calls"}]}) == (
        "tool_calls"
    )
    assert _extract.finish_reason_of({"stop_reason": "end_turn"}) == "end_turn"
    assert _extract.finish_reason_of({"choices": []}) is None
    assert _extract.output_finish_reason("tool_calls") == "tool_call"
    assert _extract.output_finish_reason("end_turn") == "stop"


def test_providers_from_packages() -> None:
    def cls(module: str) -> type:
        return type("Model", (), {"__module__": module})

    assert _extract.provider_of(cls("llama_index.llms.openai.base")) == "openai"
    assert _extract.provider_of(cls("llama_index.llms.azure_openai.base")) == "azure.ai.openai"
    assert _extract.provider_of(cls("llama_index.llms.bedrock_converse.base")) == "aws.bedrock"
    assert _extract.provider_of(cls("llama_index.embeddings.cohere.base")) == "cohere"
    assert _extract.provider_of(cls("llama_index.llms.ollama.base")) == "ollama"
    assert _extract.provider_of(cls("llama_index.core.llms.mock")) == "llama_index"
    # not a provider package: the class names the provider, not the app's module
    assert _extract.provider_of(cls("my_company.models")) == "model"


def test_endpoint() -> None:
    class Model:
        api_base = "http://localhost:11434/v1"

    assert _extract.endpoint(Model()) == ("localhost", 11434)
    Model.api_base = "https://example.openai.azure.com/openai"
    assert _extract.endpoint(Model()) == ("example.openai.azure.com", 443)


def test_provider_of_an_app_subclass_is_its_integration() -> None:
    openai = pytest.importorskip("llama_index.llms.openai")

    class GatewayOpenAI(openai.OpenAI):  # defined in app code, not in llama_index
        pass

    assert GatewayOpenAI.__module__ == __name__
    assert _extract.provider_of(GatewayOpenAI) == "openai"


@pytest.mark.parametrize("module", ["myapp.models", "__main__"])
def test_provider_of_an_apps_own_llm_is_its_class(telemetry: Telemetry, module: str) -> None:
    """An app's own ``CustomLLM`` (calling an internal gateway, say) comes from no provider
    package: its provider is its class's name, lower case (as the LangChain integration names
    an unknown model class), never the app's package or ``__main__``; its calls are CLIENT."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.llms.callbacks import llm_completion_callback

    class CompanyGateway(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="claude-sonnet")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="ok")

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    CompanyGateway.__module__ = module
    assert CompanyGateway().complete("hi").text == "ok"
    assert telemetry.tree(attributes=("gen_ai.provider.name",)) == (
        "text_completion claude-sonnet [CLIENT] gen_ai.provider.name=companygateway"
    )
    telemetry.assert_conformant()


def test_image_blocks_are_media_parts() -> None:
    import base64

    from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock

    from threadline.content import BlobPart, UriPart

    if "blocks" not in ChatMessage.model_fields:
        pytest.skip("messages have no content blocks in this LlamaIndex")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    message = ChatMessage(
        role="user",
        blocks=[
            TextBlock(text="what is this?"),
            ImageBlock(image=base64.b64encode(png), image_mimetype="image/png"),
            ImageBlock(url="https://example.com/cat.png"),
        ],
    )
    [converted] = _extract.input_messages([message])
    blob, uri = converted.parts[1:]
    assert blob == BlobPart("image", png, mime_type="image/png")
    assert isinstance(uri, UriPart)
    assert (uri.modality, uri.uri) == ("image", "https://example.com/cat.png")


def test_media_blocks_are_blob_and_uri_parts(
    telemetry: Any, capture_content: Any, tmp_path: Any
) -> None:
    """Every media block LlamaIndex has (image, audio, video, document) is a blob part (its
    data) or a URI part (its URL, or the file it names) of its modality; a cache point is no
    content, and a citable source is its content."""
    import base64
    import io
    import json

    from llama_index.core.base.llms import types
    from llama_index.core.llms import MockLLM

    if "blocks" not in types.ChatMessage.model_fields:
        pytest.skip("messages have no content blocks in this LlamaIndex")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    )
    image_file = tmp_path / "cat.png"
    image_file.write_bytes(png)
    blocks: list[Any] = [types.ImageBlock(path=image_file, image_mimetype="image/png")]
    expected: list[dict[str, Any]] = [
        {"type": "uri", "modality": "image", "uri": image_file.as_uri(), "mime_type": "image/png"}
    ]

    def add(block_type: str, make: Any, part: dict[str, Any] | None) -> None:
        cls = getattr(types, block_type, None)
        if cls is not None:  # each block type exists from some 0.12 release on
            blocks.append(make(cls))
            if part is not None:
                expected.append(part)

    pdf = b"%PDF-1.4 hello"
    add(
        "DocumentBlock",
        lambda cls: cls(data=pdf, document_mimetype="application/pdf"),
        {
            "type": "blob",
            "modality": "document",
            "content": base64.b64encode(pdf).decode(),
            "mime_type": "application/pdf",
        },
    )
    add(
        "DocumentBlock",
        lambda cls: cls(url="https://example.com/a.pdf", document_mimetype="application/pdf"),
        {
            "type": "uri",
            "modality": "document",
            "uri": "https://example.com/a.pdf",
            "mime_type": "application/pdf",
        },
    )
    mp4 = b"\x00\x00\x00\x18ftypmp42"
    add(
        "VideoBlock",
        lambda cls: cls(video=mp4, video_mimetype="video/mp4"),
        {
            "type": "blob",
            "modality": "video",
            "content": base64.b64encode(mp4).decode(),
            "mime_type": "video/mp4",
        },
    )
    add(
        "AudioBlock",
        lambda cls: cls(url="https://example.com/a.mp3", format="mp3"),
        {
            "type": "uri",
            "modality": "audio",
            "uri": "https://example.com/a.mp3",
            "mime_type": "audio/mpeg",
        },
    )
    add("CachePoint", lambda cls: cls(cache_control=types.CacheControl(type="ephemeral")), None)
    add(
        "CitableBlock",
        lambda cls: cls(title="Atlas", source="atlas", content=[types.TextBlock(text="Paris")]),
        {"type": "text", "content": "Paris"},
    )
    if "IOBase" in str(types.ImageBlock.model_fields["image"].annotation):
        add(
            "ImageBlock",
            lambda cls: cls(image=io.BytesIO(png), image_mimetype="image/png"),
            {
                "type": "blob",
                "modality": "image",
                "content": base64.b64encode(png).decode(),
                "mime_type": "image/png",
            },
        )
    MockLLM(max_tokens=1).chat([types.ChatMessage(role="user", blocks=blocks)])
    (span,) = telemetry.spans()
    (message,) = json.loads(span.attributes["gen_ai.input.messages"])
    assert message["parts"] == expected
    telemetry.assert_conformant()


def test_llm_facts_are_read_again_when_a_field_changes(telemetry: Any) -> None:
    """An LLM's facts are read once per object, and again when the app sets one of its fields."""
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model="gpt-4o-mini", temperature=0.1, api_key="sk-test")
    first = _extract.llm_facts(llm)
    assert (first.provider, first.model, first.host) == ("openai", "gpt-4o-mini", "api.openai.com")
    assert _extract.llm_facts(llm) is first
    llm.temperature = 0.7
    llm.model = "gpt-4o"
    llm.api_base = "http://localhost:8080/v1"
    again = _extract.llm_facts(llm)
    assert again.params is not None
    assert again.params.temperature == 0.7
    assert (again.model, again.host, again.port) == ("gpt-4o", "localhost", 8080)
