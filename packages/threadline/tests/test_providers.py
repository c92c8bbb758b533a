"""Provider names, server addresses and usage shapes shared by every integration."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from threadline import Usage
from threadline.providers import provider_name, server_address, usage_from_provider


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("openai", "openai"),
        ("Azure_OpenAI", "azure.ai.openai"),
        ("bedrock_converse", "aws.bedrock"),
        ("mistralai", "mistral_ai"),
        ("xai", "x_ai"),
        ("ollama", "ollama"),  # not in the registry: reported as given
    ],
)
def test_provider_name(raw: str, expected: str) -> None:
    assert provider_name(raw) == expected


def test_provider_overrides_win() -> None:
    assert provider_name("google_genai", {"google_genai": "gcp.gen_ai"}) == "gcp.gen_ai"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", ("api.openai.com", 443)),
        ("http://localhost:11434", ("localhost", 11434)),
        ("http://127.0.0.1/v1", ("127.0.0.1", 80)),
        ("not a url", (None, None)),
        ("http://[::1", (None, None)),
        (None, (None, None)),
        ("", (None, None)),
    ],
)
def test_server_address(url: str | None, expected: tuple[str | None, int | None]) -> None:
    assert server_address(url) == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (  # OpenAI chat completions
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
            Usage(100, 20, 64, None, 5),
        ),
        (  # OpenAI Responses (SDK object)
            SimpleNamespace(
                input_tokens=50,
                output_tokens=7,
                input_tokens_details=SimpleNamespace(cached_tokens=10),
                output_tokens_details=SimpleNamespace(reasoning_tokens=2),
            ),
            Usage(50, 7, 10, None, 2),
        ),
        (  # Anthropic: cached input counted apart, added into input
            {
                "input_tokens": 30,
                "output_tokens": 9,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 20,
            },
            Usage(150, 9, 100, 20, None),
        ),
        (  # Gemini usage_metadata: thinking counted apart, added into output
            {
                "prompt_token_count": 12,
                "candidates_token_count": 3,
                "cached_content_token_count": 4,
                "thoughts_token_count": 1,
            },
            Usage(12, 4, 4, None, 1),
        ),
        ({"prompt_token_count": 12, "candidates_token_count": 3}, Usage(12, 3)),
        (  # Gemini that only thought (cut off by the token limit): no candidates' count
            {"prompt_token_count": 12, "thoughts_token_count": 100},
            Usage(12, 100, None, None, 100),
        ),
        ({"inputTokens": 8, "outputTokens": 2}, Usage(8, 2)),  # Bedrock Converse
        (  # Bedrock Converse with prompt caching: cached input counted apart, added into input
            {
                "inputTokens": 8,
                "outputTokens": 2,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 20,
            },
            Usage(128, 2, 100, 20),
        ),
        ({"total": 3}, None),
        (None, None),
    ],
)
def test_usage_shapes(usage: Any, expected: Usage | None) -> None:
    assert usage_from_provider(usage) == expected


def test_payload_value_helpers_reject_bools_and_other_types() -> None:
    from threadline.providers import field_value, int_value, number_value

    assert [int_value(v) for v in (3, True, 3.0, "3", None)] == [3, None, None, None, None]
    assert [number_value(v) for v in (3, 0.5, False, "1")] == [3, 0.5, None, None]
    assert field_value({"a": 1}, "a") == 1
    assert field_value(SimpleNamespace(a=2), "a") == 2
    assert field_value(None, "a") is None
    assert field_value(SimpleNamespace(), "a") is None


def test_dimension_count() -> None:
    from threadline.providers import dimension_count

    assert dimension_count([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]) == 3  # a batch
    assert dimension_count([0.1, 0.2]) == 2  # one vector
    assert dimension_count([1, 0, 1, 1]) == 4
    for nothing in ([], [[]], None, "text", [True, False], [{"x": 1}]):
        assert dimension_count(nothing) is None, nothing
