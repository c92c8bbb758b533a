"""``embeddings {model}`` spans for LangChain embedding models.

LangChain sends no callbacks for embeddings, so :func:`threadline.langchain.instrument` wraps
the ``embed_*`` methods of every :class:`~langchain_core.embeddings.Embeddings` class: those
that exist when it runs, and (through ``Embeddings.__init_subclass__``) those defined later.
:func:`threadline.langchain.uninstrument` puts the original methods back.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import threadline
from threadline._failopen import report
from threadline._patching import Patches
from threadline.langchain import _convert
from threadline.providers import dimension_count

_METHODS = ("embed_documents", "embed_query", "aembed_documents", "aembed_query")
_MARK = "__threadline_embeddings__"

_lock = threading.Lock()
_patches = Patches()
_hooked = False
# The model whose call is being traced here: its own nested calls make no second span.
_tracing: ContextVar[object | None] = ContextVar("threadline_langchain_embedder", default=None)


def instrument_embeddings() -> None:
    """Wrap every embedding class, now and when one is defined. Idempotent."""
    global _hooked
    from langchain_core.embeddings import Embeddings

    with _lock:
        if _hooked:
            return
        for cls in (Embeddings, *_subclasses(Embeddings)):
            _patch(cls)
        setattr(Embeddings, "__init_subclass__", classmethod(_on_subclass))  # noqa: B010
        _hooked = True


def uninstrument_embeddings() -> None:
    """Restore every wrapped method and stop wrapping new classes. Idempotent."""
    global _hooked
    from langchain_core.embeddings import Embeddings

    with _lock:
        if not _hooked:
            return
        if "__init_subclass__" in Embeddings.__dict__:
            del Embeddings.__init_subclass__
        _patches.undo()
        _hooked = False


def _on_subclass(cls: Any, /, **kwargs: Any) -> None:
    from langchain_core.embeddings import Embeddings

    super(Embeddings, cls).__init_subclass__(**kwargs)
    try:
        with _lock:
            _patch(cls)
    except Exception as error:  # noqa: BLE001 - a class we cannot wrap still works, untraced
        report("langchain.embeddings.patch", error)


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _patch(cls: type) -> None:
    """Wrap the ``embed_*`` methods ``cls`` itself defines (inherited ones are wrapped where
    they are defined)."""
    for name in _METHODS:
        original = cls.__dict__.get(name)
        if (
            not inspect.isfunction(original)
            or getattr(original, _MARK, False)
            or getattr(original, "__isabstractmethod__", False)
        ):
            continue
        _patches.replace(cls, name, _wrap)


def _wrap(method: Callable[..., Any]) -> Callable[..., Any]:
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            run = _start(self)
            if run is None:
                return await method(self, *args, **kwargs)
            token = _tracing.set(self)
            try:
                with run:  # current while it runs: the HTTP client's spans nest under it
                    result = await method(self, *args, **kwargs)
                    _record(run, result)
            finally:
                _tracing.reset(token)
            return result

    else:

        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            run = _start(self)
            if run is None:
                return method(self, *args, **kwargs)
            token = _tracing.set(self)
            try:
                with run:
                    result = method(self, *args, **kwargs)
                    _record(run, result)
            finally:
                _tracing.reset(token)
            return result

    setattr(wrapper, _MARK, True)
    return wrapper


def _start(embedder: Any) -> threadline.EmbeddingsRun | None:
    """A run for this call, or None when the call is part of one of the same model already
    being traced (``embed_query`` implemented by ``embed_documents``, ``aembed_query`` by
    ``embed_query`` in an executor). A model that wraps another (``CacheBackedEmbeddings``)
    has its span, and the wrapped model's call nests under it."""
    try:
        if _tracing.get() is embedder:
            return None
        model = _convert.EmbeddingsModel(embedder)
        return threadline.embeddings(
            model.model,
            provider=model.provider,
            server_address=model.server_address,
            server_port=model.server_port,
        )
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.embeddings", error)
        return None


def _record(run: threadline.EmbeddingsRun, vectors: Any) -> None:
    try:
        dimensions = dimension_count(vectors)
        if dimensions is not None:
            run.update(dimension_count=dimensions)
    except Exception as error:  # noqa: BLE001 - fail-open
        report("langchain.embeddings.result", error)
