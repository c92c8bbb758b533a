"""Pydantic AI messages as threadline content parts.

Only called when content capture is on: with capture off none of this runs and no content object
is built. Parts are read by their ``part_kind`` so the same code reads every supported release
(1.x ``RetryPromptPart``, 2.x ``RetryFeedbackPart`` / retried ``ToolReturnPart``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic_ai.models.wrapper import WrapperModel
from threadline.content import (
    BlobPart,
    FilePart,
    FunctionToolDefinition,
    GenericPart,
    GenericToolDefinition,
    InputMessage,
    OutputMessage,
    Part,
    ReasoningPart,
    ServerToolCallPart,
    ServerToolCallResponsePart,
    TextPart,
    ToolCallRequestPart,
    ToolCallResponsePart,
    ToolDefinition,
    media_part,
)

_URI_MODALITIES = {
    "image-url": "image",
    "audio-url": "audio",
    "video-url": "video",
    "document-url": "document",
}


def _modality(media_type: str | None) -> str:
    if not media_type:
        return "document"
    head = media_type.split("/", 1)[0]
    return head if head in ("image", "audio", "video") else "document"


def _url_media_type(item: Any) -> str | None:
    """A media URL's type: given, or inferred from the URL's extension. A URL without a known
    extension (``https://host/image``) has none, and asking raises ValueError."""
    try:
        media_type = item.media_type
    except ValueError:
        return None
    return media_type if isinstance(media_type, str) else None


def _user_content(item: Any) -> Part:
    if isinstance(item, str):
        return TextPart(item)
    kind = getattr(item, "kind", None)
    if kind in _URI_MODALITIES:
        return media_part(_URI_MODALITIES[kind], str(item.url), mime_type=_url_media_type(item))
    if kind == "binary":
        media_type = getattr(item, "media_type", None)
        return BlobPart(_modality(media_type), bytes(item.data), mime_type=media_type)
    if kind in ("text-content", "structured-content"):
        # 2.x TextContent / StructuredContent: ``content`` is the text the model is sent.
        content = item.content
        return TextPart(content if isinstance(content, str) else json.dumps(content, default=str))
    if kind == "uploaded-file":  # a file in the provider's storage, by its id
        media_type = getattr(item, "media_type", None)
        if not isinstance(media_type, str) or media_type == "application/octet-stream":
            media_type = None  # unknown: what Pydantic AI infers from an id without extension
        return FilePart(_modality(media_type), str(item.file_id), mime_type=media_type)
    return GenericPart(str(kind or type(item).__name__))


def _user_parts(content: Iterable[Any]) -> Iterable[Part]:
    """A user prompt's items as parts; a cache point marks where the provider may cache the
    prompt up to, and is no content."""
    for item in content:
        if getattr(item, "kind", None) != "cache-point":
            yield _user_content(item)


def _speech_parts(part: Any) -> list[Part]:
    """Spoken audio of a realtime session, as Pydantic AI sends it to a model that takes no
    speech: its transcript; the user's audio where it has none."""
    transcript = getattr(part, "transcript", None)
    if isinstance(transcript, str):
        return [TextPart(transcript)]
    audio = getattr(part, "audio", None)
    if audio is not None and getattr(part, "speaker", None) == "user":
        return [_user_content(audio)]
    return []


_MEDIA_KINDS = frozenset({*_URI_MODALITIES, "binary"})


def _is_media(item: Any) -> bool:
    try:  # the user's object: an attribute hook may raise anything
        kind = getattr(item, "kind", None)
    except Exception:  # noqa: BLE001 - no media, recorded as it is
        return False
    return isinstance(kind, str) and kind in _MEDIA_KINDS


def tool_result(result: Any) -> Any:
    """A tool's result as recorded: the media Pydantic AI sends the model (an image, a file or
    its URL, alone or among the result's items) as the conventions' parts, the rest as it is."""
    if _is_media(result):
        return _user_content(result)
    if isinstance(result, (list, tuple)) and any(_is_media(item) for item in result):
        return [_user_content(item) if _is_media(item) else item for item in result]
    return result


def _retry_text(part: Any) -> str:
    """The text the model is sent: a retried or failed tool return (2.x) goes as
    ``model_response_str()``, JSON such as ``{"error": ...}``; a retry prompt as
    ``model_response()``."""
    model_response = getattr(part, "model_response_str", None) or getattr(
        part, "model_response", None
    )
    if callable(model_response):
        return str(model_response())
    return str(getattr(part, "content", ""))


def _tool_response(part: Any) -> Any:
    if getattr(part, "outcome", None) in ("retried", "failed"):
        return _retry_text(part)
    return tool_result(getattr(part, "content", None))


def input_messages(messages: Iterable[Any]) -> tuple[list[InputMessage], list[Part]]:
    """The chat history as input messages, and the instructions of its latest request. System
    prompts are part of the history, so they are ``system`` messages in it; instructions are
    kept apart from it (as Pydantic AI's own instrumentation records them)."""
    out: list[InputMessage] = []
    latest_instructions: list[Part] = []
    for message in messages:
        if getattr(message, "kind", None) == "response":
            out.append(InputMessage("assistant", _response_parts(message.parts)))
            continue
        user: list[Part] = []
        for part in getattr(message, "parts", ()):
            kind = getattr(part, "part_kind", None)
            if kind == "system-prompt":
                _flush(out, user)
                _system(out, TextPart(str(part.content)))
            elif kind == "user-prompt":
                content = part.content
                if isinstance(content, str):
                    user.append(TextPart(content))
                else:
                    user.extend(_user_parts(content))
            elif kind == "speech":
                user.extend(_speech_parts(part))
            elif kind == "compaction":
                # a summary the app wrote of the history before it: the model gets its text
                summary = getattr(part, "content", None)
                if isinstance(summary, str) and summary:
                    user.append(TextPart(summary))
            elif kind == "tool-return":
                _flush(out, user)
                out.append(
                    InputMessage(
                        "tool",
                        [ToolCallResponsePart(_tool_response(part), id=part.tool_call_id)],
                    )
                )
            elif kind in ("retry-prompt", "retry-feedback"):
                call_id = getattr(part, "tool_call_id", None)
                if getattr(part, "tool_name", None) and call_id:
                    _flush(out, user)
                    out.append(
                        InputMessage("tool", [ToolCallResponsePart(_retry_text(part), id=call_id)])
                    )
                else:
                    feedback = _retry_text(part)
                    if kind == "retry-feedback" and _speaks_as_system(part, feedback):
                        _flush(out, user)
                        _system(out, TextPart(feedback))
                    else:
                        user.append(TextPart(feedback))
        _flush(out, user)
        instructions = getattr(message, "instructions", None)
        if isinstance(instructions, str) and instructions:
            latest_instructions = [TextPart(instructions)]
    return out, latest_instructions


def _speaks_as_system(part: Any, text: str) -> bool:
    """Whether 2.x retry feedback reaches the model as a system prompt: the framework's own
    ``no_output`` text, which ``model_response()`` leaves unfenced (any other feedback goes as a
    fenced user prompt)."""
    retry = getattr(part, "retry", None)
    return getattr(retry, "cause", None) == "no_output" and text == part.content


def _system(out: list[InputMessage], prompt: Part) -> None:
    if out and out[-1].role == "system":  # consecutive prompts: one message
        out[-1] = InputMessage("system", [*out[-1].parts, prompt])
    else:
        out.append(InputMessage("system", [prompt]))


def _flush(out: list[InputMessage], user: list[Part]) -> None:
    if user:
        out.append(InputMessage("user", list(user)))
        user.clear()


def _response_parts(parts: Iterable[Any]) -> list[Part]:
    out: list[Part] = []
    for part in parts:
        kind = getattr(part, "part_kind", None)
        if kind == "text":
            out.append(TextPart(part.content))
        elif kind == "tool-call":
            out.append(
                ToolCallRequestPart(part.tool_name, id=part.tool_call_id, arguments=_args(part))
            )
        elif kind == "builtin-tool-call":
            # Run by the provider (web search, code execution), not by the app: no tool call.
            details = {"arguments": _args(part)}
            out.append(ServerToolCallPart(part.tool_name, part.tool_call_id or None, details))
        elif kind == "builtin-tool-return":
            details = {"response": part.content}
            out.append(
                ServerToolCallResponsePart(part.tool_name, part.tool_call_id or None, details)
            )
        elif kind == "thinking":
            out.append(ReasoningPart(part.content))
        elif kind == "file":  # a file the model made (an image): its content is BinaryContent
            out.append(_user_content(part.content))
        elif kind == "compaction":  # the provider's summary of the history before it
            data = {"id": getattr(part, "id", None), "content": getattr(part, "content", None)}
            out.append(GenericPart("compaction", {k: v for k, v in data.items() if v is not None}))
        elif kind == "speech":
            out.extend(_speech_parts(part))
        else:
            out.append(GenericPart(str(kind or type(part).__name__)))
    return out


def _args(part: Any) -> Any:
    try:
        return part.args_as_dict()
    except Exception:  # noqa: BLE001 - malformed JSON from the model: keep it as text
        return part.args


def output_messages(response: Any) -> list[OutputMessage]:
    finish_reason = getattr(response, "finish_reason", None)
    return [OutputMessage(_response_parts(response.parts), finish_reason=finish_reason)]


def instruction_parts(parameters: Any) -> list[Part] | None:
    parts = getattr(parameters, "instruction_parts", None)
    if not parts:
        return None
    return [TextPart(str(part.content)) for part in parts]


def _resolved_tools(parameters: Any, model: Any) -> Any:
    """The request's tools as the model sends them (2.x): the model resolves them only as it
    prepares the request, withholding the tools of deferred loading that the history has not
    revealed yet, and dropping a local fallback (``search_tools``) for a provider tool it has."""
    while isinstance(model, WrapperModel):
        model = model.wrapped
    resolve = getattr(model, "_tools_resolved_for_messages", None)
    if not callable(resolve):
        return parameters  # 1.x: no deferred loading, every tool is sent
    try:
        return resolve(parameters)
    except Exception:  # noqa: BLE001 - e.g. a provider tool the model lacks: the request fails
        return parameters


def tool_definitions(
    parameters: Any, model: Any = None, output_mode: str | None = None
) -> list[ToolDefinition]:
    """The tools the model is told of. Output tools only where the output goes through them:
    a structured output type without a mode (``auto``) that the model gives ``native`` or
    ``prompted`` output sends none."""
    parameters = _resolved_tools(parameters, model)
    visibility = getattr(parameters, "visibility_of", None)
    tools: Sequence[Any] = [
        *(
            tool
            for tool in getattr(parameters, "function_tools", None) or ()
            if visibility is None or visibility(tool.name) != "withheld"
        ),
        *(
            (getattr(parameters, "output_tools", None) or ())
            if output_mode in (None, "tool")
            else ()
        ),
    ]
    out: list[ToolDefinition] = [
        FunctionToolDefinition(
            tool.name,
            description=tool.description,
            parameters=getattr(tool, "parameters_json_schema", None),
        )
        for tool in tools
    ]
    # The provider's own tools (web search, code execution): ``native_tools`` in 2.x,
    # ``builtin_tools`` in 1.x, each a dataclass told by its ``kind``.
    native = getattr(parameters, "native_tools", None) or getattr(parameters, "builtin_tools", None)
    for tool in native or ():
        kind = getattr(tool, "kind", None)
        if not isinstance(kind, str) or not kind:
            continue
        # Its settings besides the kind; the core records only the plain ones that are set.
        options = (
            {f.name: getattr(tool, f.name) for f in dataclasses.fields(tool) if f.name != "kind"}
            if dataclasses.is_dataclass(tool)
            else None
        )
        name = getattr(tool, "unique_id", None)  # e.g. "mcp_server:github"
        out.append(
            GenericToolDefinition(
                kind, name if isinstance(name, str) and name else kind, options=options or None
            )
        )
    return out
