"""User sessions carried as W3C baggage: ``session.id``, ``user.id``, ``gen_ai.conversation.id``.

``threadline.session(...)`` puts the entries into baggage for the duration of a block (or of each
call of a decorated function); every span threadline creates under it carries them as attributes,
and :class:`SessionSpanProcessor` stamps them on every other span (HTTP, DB) as well. Baggage lives
in the OpenTelemetry context, so it follows asyncio tasks and threads that copy the context, and
``threadline.inject`` carries the allow-listed entries to other processes.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from threadline import _context, config, semconv

_F = TypeVar("_F", bound=Callable[..., Any])
MAX_VALUE_LENGTH = 256
_MAX_OPEN_ENTERS = 4096


def _check(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"session value for {key!r} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"session value for {key!r} must be 1..{MAX_VALUE_LENGTH} characters")
    if not value.isprintable():  # control characters, lone surrogates: no receiver keeps them
        raise ValueError(f"session value for {key!r} must be printable text, got {value!r}")
    return value


class session:
    """Mark everything inside as belonging to one user session.

    Usable as ``with threadline.session("s-1", user_id="u-7"):``, ``async with``, or as a
    decorator on sync and async functions. Extra keyword arguments (e.g. ``feature="search"``)
    become baggage entries too; they only leave the process or reach spans if allow-listed in
    ``configure(baggage_allowlist=...)``, and reach the cost metric if listed in
    ``metric_baggage_keys``.
    """

    __slots__ = ("_entries", "_lock", "_tokens")

    def __init__(
        self,
        session_id: str,
        *,
        user_id: str | None = None,
        conversation_id: str | None = None,
        **extra: str,
    ) -> None:
        entries = {semconv.BAGGAGE_SESSION_ID: _check("session_id", session_id)}
        if user_id is not None:
            entries[semconv.BAGGAGE_USER_ID] = _check("user_id", user_id)
        if conversation_id is not None:
            entries[semconv.BAGGAGE_CONVERSATION_ID] = _check("conversation_id", conversation_id)
        for key, value in extra.items():
            if not config.BAGGAGE_KEY.match(key):
                raise ValueError(f"{key!r} is not a valid baggage key")
            entries[key] = _check(key, value)
        self._entries = entries
        # (context attached, its token) per enter: one session object may be entered by several
        # tasks or threads at once, and each exit must detach its own enter.
        self._tokens: list[tuple[Context, Token[Context]]] = []
        self._lock = threading.Lock()

    @property
    def entries(self) -> Mapping[str, str]:
        return dict(self._entries)

    def context(self, base: Context | None = None) -> Context:
        """``base`` (default: current) with this session's baggage entries set."""
        ctx = base if base is not None else otel_context.get_current()
        for key, value in self._entries.items():
            ctx = otel_baggage.set_baggage(key, value, ctx)
        return ctx

    def __enter__(self) -> session:
        ctx = self.context()
        token = _context.attach(ctx)
        with self._lock:
            tokens = self._tokens
            if len(tokens) >= _MAX_OPEN_ENTERS:
                # Enters whose exits ran in another context (nothing there to undo) never
                # leave the list: bounded, the oldest goes.
                del tokens[0]
            tokens.append((ctx, token))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        current = otel_context.get_current()
        with self._lock:
            tokens = self._tokens
            for index in range(len(tokens) - 1, -1, -1):
                if tokens[index][0] is current and _context.detach(tokens[index][1]):
                    del tokens[index]
                    return
            # The block left a context of its own attached: undo the latest enter made in this
            # context (a token of another task's or thread's context does not reset here),
            # which also restores what was current before the block.
            for index in range(len(tokens) - 1, -1, -1):
                if _context.detach(tokens[index][1]):
                    del tokens[index]
                    return

    async def __aenter__(self) -> session:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: _F) -> _F:
        entries = self._entries

        def fresh() -> session:
            clone = object.__new__(session)
            clone._entries, clone._tokens, clone._lock = entries, [], threading.Lock()
            return clone

        if inspect.isasyncgenfunction(fn):
            return cast(_F, _async_generator_wrapper(fn, self.context))
        if inspect.isgeneratorfunction(fn):
            return cast(_F, _generator_wrapper(fn, self.context))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with fresh():
                    return await fn(*args, **kwargs)

            return cast(_F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with fresh():
                return fn(*args, **kwargs)

        return cast(_F, wrapper)


class _StepContext:
    """The OpenTelemetry context a decorated async generator runs each step in: the session's
    baggage over what is current at its first step, then what the generator left current at
    the end of its last step (a span it opened around a ``yield`` stays the parent of what it
    does next). Between items the consumer's context is as the consumer left it."""

    __slots__ = ("_ctx", "_first", "_token")

    def __init__(self, first: Callable[[], Context]) -> None:
        self._first = first
        self._ctx: Context | None = None
        self._token: Token[Context] | None = None

    def __enter__(self) -> None:
        self._token = _context.attach(self._ctx if self._ctx is not None else self._first())

    def __exit__(self, *exc_info: object) -> None:
        self._ctx = otel_context.get_current()
        if self._token is not None:
            _context.detach(self._token)


def _generator_wrapper(
    fn: Callable[..., Generator[Any, Any, Any]], first: Callable[[], Context]
) -> Callable[..., Generator[Any, Any, Any]]:
    """A decorated generator runs every step in a ``contextvars.Context`` of its own, as an
    asyncio task does: a copy of the consumer's at its first step, with the session attached.
    What it attaches around a ``yield`` stays its own, wherever (in whichever thread or copied
    context, as Starlette's ``iterate_in_threadpool`` does) the consumer asks for the next item."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        generator = fn(*args, **kwargs)
        own: contextvars.Context | None = None
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            if own is None:
                own = contextvars.copy_context()
                own.run(_context.attach, first())  # the context is the generator's alone
            try:
                if thrown is None:
                    item = own.run(generator.send, sent)
                else:
                    item = own.run(generator.throw, thrown)
            except StopIteration as stop:
                return stop.value
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                own.run(generator.close)
                raise
            except BaseException as error:  # noqa: BLE001 - passed on into the generator
                thrown = error

    return wrapper


def _async_generator_wrapper(
    fn: Callable[..., AsyncGenerator[Any, Any]], first: Callable[[], Context]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        generator = fn(*args, **kwargs)
        step = _StepContext(first)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                with step:
                    if thrown is None:
                        item = await generator.asend(sent)
                    else:
                        item = await generator.athrow(thrown)
            except StopAsyncIteration:
                return
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                with step:
                    await _context.close_inner(generator)
                raise
            except BaseException as error:  # noqa: BLE001 - passed on into the generator
                thrown = error

    return wrapper


def current_session(ctx: Context | None = None) -> dict[str, str]:
    """The allow-listed session entries visible in ``ctx`` (default: current context)."""
    allow = config.current().baggage_allowlist
    return {
        key: value
        for key, value in otel_baggage.get_all(ctx).items()
        if key in allow
        and isinstance(value, str)
        and len(value) <= MAX_VALUE_LENGTH
        and value.isprintable()  # baggage the app set itself is unchecked
    }


def _make_processor() -> type:
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

    class SessionSpanProcessor(SpanProcessor):
        """Stamps the allow-listed session baggage on every span as it starts.

        Add it to your ``TracerProvider`` so HTTP, database and other non-GenAI spans carry
        ``session.id``/``user.id`` too: ``provider.add_span_processor(SessionSpanProcessor())``.
        """

        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            try:
                entries = current_session(parent_context)
                if entries:
                    # What the span already has wins (an explicit conversation id, threadline's
                    # own session attributes), and the conversation id stays off: the
                    # conventions define it for GenAI operations only, which threadline's runs
                    # stamp themselves.
                    present = span.attributes or {}
                    missing = {
                        key: value
                        for key, value in entries.items()
                        if key not in present and key != semconv.GEN_AI_CONVERSATION_ID
                    }
                    if missing:
                        span.set_attributes(missing)
            except Exception as error:  # noqa: BLE001 - fail-open
                from threadline._failopen import report

                report("SessionSpanProcessor.on_start", error)

        def on_end(self, span: ReadableSpan) -> None:
            return None

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return SessionSpanProcessor
