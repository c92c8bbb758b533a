"""The ``gen_ai.*`` and ``mcp.*`` attribute keys the pinned semantic conventions declare.

Copied from semantic-conventions-genai ``model/gen-ai/registry.yaml`` and
``model/mcp/registry.yaml`` (kept in code: the package reads no registry files at run time),
plus newer names that threadline already emits.
"""

from __future__ import annotations

from typing import Final

from threadline import semconv

KNOWN_ATTRIBUTES: Final = frozenset(
    {
        "gen_ai.agent.description",
        "gen_ai.agent.id",
        "gen_ai.agent.name",
        "gen_ai.agent.version",
        "gen_ai.conversation.id",
        "gen_ai.data_source.id",
        "gen_ai.embeddings.dimension.count",
        "gen_ai.evaluation.explanation",
        "gen_ai.evaluation.name",
        "gen_ai.evaluation.score.label",
        "gen_ai.evaluation.score.value",
        "gen_ai.input.messages",
        "gen_ai.memory.query.text",
        "gen_ai.memory.record.count",
        "gen_ai.memory.record.id",
        "gen_ai.memory.records",
        "gen_ai.memory.store.id",
        "gen_ai.operation.name",
        "gen_ai.output.messages",
        "gen_ai.output.type",
        "gen_ai.prompt.name",
        "gen_ai.provider.name",
        "gen_ai.request.choice.count",
        "gen_ai.request.encoding_formats",
        "gen_ai.request.frequency_penalty",
        "gen_ai.request.max_tokens",
        "gen_ai.request.model",
        "gen_ai.request.presence_penalty",
        "gen_ai.request.seed",
        "gen_ai.request.stop_sequences",
        "gen_ai.request.stream",
        "gen_ai.request.temperature",
        "gen_ai.request.top_k",
        "gen_ai.request.top_p",
        "gen_ai.response.finish_reasons",
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.retrieval.documents",
        "gen_ai.retrieval.query.text",
        "gen_ai.system_instructions",
        "gen_ai.token.cache",
        "gen_ai.token.modality",
        "gen_ai.token.phase",
        "gen_ai.token.type",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.id",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.tool.description",
        "gen_ai.tool.name",
        "gen_ai.tool.type",
        "gen_ai.usage.audio.input_tokens",
        "gen_ai.usage.audio.output_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.image.input_tokens",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.text.input_tokens",
        "gen_ai.usage.text.output_tokens",
        "gen_ai.usage.video.input_tokens",
        "gen_ai.workflow.name",
        "mcp.method.name",
        "mcp.protocol.version",
        "mcp.resource.uri",
        "mcp.session.id",
        # Renamed from gen_ai.usage.cache_creation.input_tokens after the pin.
        semconv.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    }
)

KNOWN_ATTRIBUTE_PREFIXES: Final = (
    # Template attribute: gen_ai.prompt.variable.<name>, one per prompt variable.
    "gen_ai.prompt.variable.",
)

CHECKED_NAMESPACES: Final = ("gen_ai.", "mcp.")


def is_known_attribute(key: str) -> bool:
    """Whether ``key`` is declared, or lies outside the ``gen_ai.``/``mcp.`` namespaces."""
    if not key.startswith(CHECKED_NAMESPACES):
        return True
    return key in KNOWN_ATTRIBUTES or key.startswith(KNOWN_ATTRIBUTE_PREFIXES)
