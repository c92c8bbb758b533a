"""The cross-framework agent of ``threadline demo``: LangGraph, LlamaIndex, Pydantic AI and MCP.

A LangGraph agent (``trip-planner``) answers one question with three tools:

* ``search_guides`` retrieves from a small LlamaIndex ``VectorStoreIndex`` (``MockEmbedding``);
* ``ask_expert`` delegates to a Pydantic AI sub-agent (``cycling-expert``, a ``FunctionModel``);
* ``get_weather`` calls a tool on an MCP server started as a stdio subprocess
  (:mod:`threadline._demo_mcp_server`); its first call names a place the server does not know,
  so the trace shows a failed tool call next to the successful retry.

Every model is a fake that answers from a script, so the demo runs offline. All four frameworks
are traced by their threadline integrations' ``instrument()``; nothing here creates spans itself
except the session (baggage) around the run. This module imports the frameworks: import it only
when they are installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolCall
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool

QUESTION = "Can I cycle from the Eiffel Tower to the Louvre this afternoon?"
AGENT_NAME = "trip-planner"
EXPERT_NAME = "cycling-expert"

GUIDES = {
    "guide-velib": "Velib' bikes can be rented at 1,400 stations across Paris, day or night.",
    "guide-route": "The riverside cycle path links the Eiffel Tower to the Louvre in about 20 "
    "minutes along the Seine.",
    "guide-museum": "The Louvre is open until 18:00 except on Tuesdays; bike racks are on the "
    "rue de Rivoli side.",
}
ANSWER = (
    "Yes: take a Velib' along the riverside path (about 20 minutes). It is 18 °C and clear in "
    "Paris this afternoon; lock the bike on the rue de Rivoli side of the Louvre."
)


def _usage(
    input_tokens: int, output_tokens: int, *, cache_read: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if cache_read:
        usage["input_token_details"] = {"cache_read": cache_read}
    if reasoning:
        usage["output_token_details"] = {"reasoning": reasoning}
    return usage


def _script() -> list[AIMessage]:
    """The planner model's turns: three tool rounds (one retried), then the answer."""

    def call(name: str, args: dict[str, Any], call_id: str) -> list[ToolCall]:
        return [ToolCall(name=name, args=args, id=call_id)]

    return [
        AIMessage(
            content="",
            tool_calls=call("search_guides", {"query": "cycling to the Louvre"}, "call_guides"),
            usage_metadata=_usage(212, 24),
        ),
        AIMessage(
            content="",
            tool_calls=call(
                "ask_expert",
                {"question": "Is the riverside path safe for a tourist?"},
                "call_expert",
            ),
            usage_metadata=_usage(338, 31, cache_read=192),
        ),
        AIMessage(
            content="",
            tool_calls=call("get_weather", {"city": "Louvre"}, "call_weather_1"),
            usage_metadata=_usage(401, 19, cache_read=320),
        ),
        AIMessage(
            content="",
            tool_calls=call("get_weather", {"city": "Paris"}, "call_weather_2"),
            usage_metadata=_usage(446, 19, cache_read=384),
        ),
        AIMessage(
            content=ANSWER,
            usage_metadata=_usage(497, 46, cache_read=448, reasoning=12),
        ),
    ]


class ScriptedChatModel(BaseChatModel):
    """A LangChain chat model that streams scripted answers (tool calls included) with usage,
    word by word and with the usage in a final chunk, like a provider's streaming API."""

    model: str = "planner-1"
    responses: list[AIMessage]
    streaming: bool = True
    index: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self.responses[min(self.index, len(self.responses) - 1)]
        self.index += 1
        chunks: list[AIMessageChunk] = []
        words = str(message.content).split(" ") if message.content else []
        chunks.extend(
            AIMessageChunk(content=word if i == 0 else " " + word) for i, word in enumerate(words)
        )
        chunks.extend(
            AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {
                        "name": call["name"],
                        "args": json.dumps(call["args"]),
                        "id": call["id"],
                        "index": index,
                    }
                ],
            )
            for index, call in enumerate(message.tool_calls)
        )
        reason = "tool_calls" if message.tool_calls else "stop"
        chunks.append(
            AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata={
                    "finish_reason": reason,
                    "model_name": f"{self.model}-2026-01",
                    "id": f"resp-planner-{self.index}",
                },
            )
        )
        for message_chunk in chunks:
            chunk = ChatGenerationChunk(message=message_chunk)
            if run_manager:
                run_manager.on_llm_new_token(str(message_chunk.content), chunk=chunk)
            yield chunk


class _Guides:
    """The LlamaIndex side: a small in-memory vector index, built on first use."""

    def __init__(self) -> None:
        self._index: Any = None

    async def search(self, query: str) -> str:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.embeddings import MockEmbedding
        from llama_index.core.schema import TextNode

        if self._index is None:
            nodes = [TextNode(text=text, id_=node_id) for node_id, text in GUIDES.items()]
            self._index = VectorStoreIndex(
                nodes, embed_model=MockEmbedding(embed_dim=8, model_name="mock-embedding")
            )
        retriever = self._index.as_retriever(similarity_top_k=2)
        found = await retriever.aretrieve(query)
        return "\n".join(node.get_content() for node in found)


def _expert() -> Any:
    """The Pydantic AI side: a sub-agent whose model is a ``FunctionModel``."""
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel
    from pydantic_ai.usage import RequestUsage

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(
            parts=[
                TextPart(
                    "Yes. The riverside path is separated from traffic; keep right and walk "
                    "the bike across the Pont Royal."
                )
            ],
            usage=RequestUsage(input_tokens=64, output_tokens=27),
            model_name="expert-mini-2026-01",
            provider_response_id="resp-expert-1",
            finish_reason="stop",
        )

    return Agent(
        FunctionModel(answer, model_name="expert-mini"),
        name=EXPERT_NAME,
        instructions="You know everything about cycling in Paris. Answer in two sentences.",
    )


class _Weather:
    """The MCP side: a client for the demo's weather server, run as a stdio subprocess.

    The first call starts the server; later calls reuse its connection. The connection lives
    in a task of its own (anyio wants a client entered and exited in one task, and each tool
    call runs in a task of its own), started from the first call, so the connection's
    ``server/discover`` request is traced under that call.
    """

    def __init__(self, spans_file: str, otlp: str | None) -> None:
        self.spans_file = spans_file
        self.otlp = otlp
        self._client: asyncio.Future[Any] | None = None
        self._closing = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None

    def _server(self) -> Any:
        from mcp import StdioServerParameters

        env = dict(os.environ)
        for key in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
            env.pop(key, None)  # the server's spans go where the demo says, nowhere else
        args = ["-m", "threadline._demo_mcp_server", self.spans_file]
        if self.otlp:
            args.append(self.otlp)
        return StdioServerParameters(command=sys.executable, args=args, env=env)

    async def _connect(self, client: asyncio.Future[Any]) -> None:
        from mcp import Client

        try:
            async with Client(self._server()) as connected:
                client.set_result(connected)
                await self._closing.wait()
        except BaseException as error:
            if not client.done():
                client.set_exception(error)
            raise

    async def get(self, city: str) -> str:
        if self._client is None:
            self._client = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._connect(self._client))
        client = await self._client
        result = await client.call_tool("get_weather", {"city": city})
        text = "".join(getattr(part, "text", "") for part in result.content)
        return f"error: {text}" if result.is_error else text

    async def close(self) -> None:
        self._closing.set()
        if self._owner is not None:
            await self._owner


def _tools(guides: _Guides, expert: Any, weather: _Weather) -> list[BaseTool]:
    @tool
    async def search_guides(query: str) -> str:
        """Search the city guides."""
        return await guides.search(query)

    @tool
    async def ask_expert(question: str) -> str:
        """Ask the cycling expert."""
        result = await expert.run(question)
        return str(result.output)

    @tool
    async def get_weather(city: str) -> str:
        """Current weather for a city."""
        return await weather.get(city)

    return [search_guides, ask_expert, get_weather]


def build_graph(tools: list[BaseTool]) -> Any:
    """A LangGraph ReAct loop: the ``agent`` node calls the model, ``tools`` runs its calls."""
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    model = ScriptedChatModel(responses=_script()).bind_tools(tools)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    return graph.compile(name=AGENT_NAME)


def instrument() -> None:
    import threadline.langchain
    import threadline.llamaindex
    import threadline.mcp
    import threadline.pydantic_ai

    threadline.langchain.instrument()
    threadline.llamaindex.instrument()
    threadline.pydantic_ai.instrument()
    threadline.mcp.instrument()


def uninstrument() -> None:
    import threadline.langchain
    import threadline.llamaindex
    import threadline.mcp
    import threadline.pydantic_ai

    threadline.mcp.uninstrument()
    threadline.pydantic_ai.uninstrument()
    threadline.llamaindex.uninstrument()
    threadline.langchain.uninstrument()


async def run(server_spans_file: str, otlp: str | None = None) -> str:
    """Answer :data:`QUESTION` with the agent; returns the answer."""
    weather = _Weather(server_spans_file, otlp)
    graph = build_graph(_tools(_Guides(), _expert(), weather))
    try:
        state = await graph.ainvoke({"messages": [HumanMessage(QUESTION)]})
    finally:
        await weather.close()
    return str(state["messages"][-1].content)
