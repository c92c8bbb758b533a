"""inject/extract/continue_trace: allow-listed baggage out, hostile input in (fuzzed)."""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace

import threadline
from threadline import config, semconv
from threadline.testing import Telemetry

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_round_trip_carries_trace_and_session_only(telemetry: Telemetry) -> None:
    carrier: dict[str, str] = {"baggage": "stale=1"}
    ctx = otel_baggage.set_baggage("api_key", "sk-secret")
    token = otel_context.attach(ctx)
    try:
        with threadline.session("s-1", user_id="u-1"), threadline.execute_tool("call") as tool:
            threadline.inject(carrier)
            expected_trace = format(tool.span.get_span_context().trace_id, "032x")
    finally:
        otel_context.detach(token)
    assert carrier["traceparent"].split("-")[1] == expected_trace
    assert "sk-secret" not in carrier["baggage"]
    assert "stale" not in carrier["baggage"]
    assert set(carrier["baggage"].split(",")) == {"session.id=s-1", "user.id=u-1"}

    with threadline.continue_trace(carrier), threadline.execute_tool("remote") as remote:
        assert threadline.current_session() == {"session.id": "s-1", "user.id": "u-1"}
    span = next(s for s in telemetry.spans() if s.name == "execute_tool remote")
    assert span.trace_id == expected_trace
    assert span.attributes[semconv.SESSION_ID] == "s-1"
    del remote


def test_inject_without_session_removes_foreign_baggage() -> None:
    carrier = {"baggage": "api_key=sk-secret"}
    token = otel_context.attach(otel_baggage.set_baggage("api_key", "sk-secret"))
    try:
        threadline.inject(carrier)
    finally:
        otel_context.detach(token)
    assert "baggage" not in carrier


def test_extract_header_casing_and_values() -> None:
    ctx = threadline.extract(
        {"Traceparent": TRACEPARENT, "BAGGAGE": "session.id=a%20b,evil=1,user.id=u"},
        context=otel_context.Context(),
    )
    span_context = trace.get_current_span(ctx).get_span_context()
    assert format(span_context.trace_id, "032x") == TRACE_ID
    assert span_context.is_remote
    assert otel_baggage.get_all(ctx) == {"session.id": "a b", "user.id": "u"}


def test_baggage_is_capped_in_bytes_and_ascii_only() -> None:
    empty = otel_context.Context()
    previous = config.current()
    threadline.configure(max_inbound_baggage_bytes=64)
    try:
        fits = "session.id=" + "a" * 50
        assert otel_baggage.get_all(threadline.extract({"baggage": fits}, context=empty))
        wide = "session.id=" + "\u00e9" * 25  # 36 characters, 61 bytes: fits, but not ASCII
        assert otel_baggage.get_all(threadline.extract({"baggage": wide}, context=empty)) == {}
        over = "user.id=u,session.id=" + "\u00e9" * 30  # 51 characters, 81 bytes
        assert otel_baggage.get_all(threadline.extract({"baggage": over}, context=empty)) == {}
        encoded = "session.id=" + "%C3%A9" * 3  # percent-encoded UTF-8 is the W3C way
        ctx = threadline.extract({"baggage": encoded}, context=empty)
        assert otel_baggage.get_all(ctx) == {"session.id": "\u00e9" * 3}
    finally:
        config.restore(previous)


def test_inject_keeps_baggage_within_w3c_limits_and_drops_what_no_receiver_keeps(
    telemetry: Telemetry,
) -> None:
    """Outbound baggage stays within W3C's 8192 bytes (members that do not fit are left out,
    not the header), and a value no receiver keeps (a lone surrogate, a control character) is
    left out alone: the rest of the session still crosses."""
    emoji = "\U0001f600" * 256  # 256 characters, 3072 bytes percent-encoded
    ctx = otel_context.get_current()
    for key in ("session.id", "user.id", "gen_ai.conversation.id"):
        ctx = otel_baggage.set_baggage(key, emoji, ctx)
    carrier: dict[str, str] = {}
    threadline.inject(carrier, context=ctx)
    assert len(carrier["baggage"].encode()) <= 8192
    kept = otel_baggage.get_all(threadline.extract(carrier, context=otel_context.Context()))
    assert kept == {"session.id": emoji, "user.id": emoji}  # the third did not fit

    ctx = otel_baggage.set_baggage("session.id", "s-1", otel_context.Context())
    ctx = otel_baggage.set_baggage("user.id", "u\udcff", ctx)
    ctx = otel_baggage.set_baggage("gen_ai.conversation.id", "tab\there", ctx)
    carrier = {}
    threadline.inject(carrier, context=ctx)
    assert carrier["baggage"] == "session.id=s-1"


def test_hostile_carriers_are_dropped_quietly(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="threadline")
    empty = otel_context.Context()
    hostile: list[Any] = [
        None,
        1,
        "traceparent",
        [("traceparent", TRACEPARENT)],
        {"traceparent": 1, "baggage": 1},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids are invalid
        {"traceparent": "zz-" + TRACE_ID + "-" + PARENT_ID + "-01"},
        {"traceparent": "ff-" + TRACE_ID + "-" + PARENT_ID + "-01"},  # version ff is invalid
        {"traceparent": TRACEPARENT + "-extra"},  # version 00 has exactly four fields
        {"traceparent": TRACEPARENT.upper()},  # ids are lower-case hex
        {"traceparent": "00-" + TRACE_ID[:-1] + "-" + PARENT_ID + "-01"},
        {"traceparent": TRACEPARENT + "x" * 1_000_000},
        {"baggage": "session.id=" + "x" * 1_000_000},
        {"baggage": ",".join(f"k{i}=v" for i in range(5000))},
        {"baggage": "session.id=%ff%fe"},
        {"baggage": "session.id=ok;prop=1,user.id"},
        {"tracestate": "a=b", "traceparent": None},
        {"traceparent": b"\xff\xfe"},
    ]
    for carrier in hostile:
        ctx = threadline.extract(carrier, context=empty)
        assert not trace.get_current_span(ctx).get_span_context().is_valid
        for key, value in otel_baggage.get_all(ctx).items():
            assert key in semconv.SESSION_BAGGAGE_KEYS
            assert isinstance(value, str)
            assert len(value) <= 256
    assert "internal error" not in caplog.text


_text = st.text(max_size=300)
_carrier_values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=200),
    _text,
    st.lists(_text, max_size=3),
    st.dictionaries(_text, _text, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(
    carrier=st.one_of(
        _carrier_values,
        st.dictionaries(
            st.sampled_from(["traceparent", "tracestate", "baggage", "Baggage", "x"]) | _text,
            _carrier_values,
            max_size=6,
        ),
        st.fixed_dictionaries(
            {
                "traceparent": st.from_regex(
                    r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", fullmatch=True
                ),
                "baggage": st.lists(
                    st.tuples(
                        st.sampled_from([*semconv.SESSION_BAGGAGE_KEYS, "secret"]) | _text, _text
                    ).map(lambda kv: f"{kv[0]}={kv[1]}"),
                    max_size=20,
                ).map(",".join),
            }
        ),
    )
)
def test_extract_never_raises_and_keeps_only_allowed(carrier: Any) -> None:
    ctx = threadline.extract(carrier, context=otel_context.Context())
    for key, value in otel_baggage.get_all(ctx).items():
        assert key in semconv.SESSION_BAGGAGE_KEYS
        assert isinstance(value, str)
        assert 0 < len(value) <= 256
    with threadline.continue_trace(carrier):
        pass


def test_continue_trace_always_detaches() -> None:
    before = otel_context.get_current()
    try:
        with threadline.continue_trace({"traceparent": TRACEPARENT}):
            assert trace.get_current_span().get_span_context().is_valid
            raise KeyError("user error")
    except KeyError:
        pass
    assert otel_context.get_current() == before


def test_inject_drops_a_tracestate_of_another_trace(telemetry: Telemetry) -> None:
    carrier = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=upstream",
    }
    with threadline.execute_tool("t") as tool:
        threadline.inject(carrier, tool.context)
    assert carrier["traceparent"].split("-")[1] == f"{tool.span.get_span_context().trace_id:032x}"
    assert "tracestate" not in carrier


def test_inject_replaces_header_cased_fields(telemetry: Telemetry) -> None:
    """A dict of HTTP headers (``dict(request.headers)``) holds title-cased names: they are the
    same fields to the receiver, so a foreign ``Baggage`` must not travel beside ours."""
    carrier = {
        "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Tracestate": "vendor=upstream",
        "BAGGAGE": "api_key=sk-secret",
        "Accept": "text/plain",
    }
    with threadline.session("s-1"), threadline.execute_tool("t") as tool:
        threadline.inject(carrier)
    span_context = tool.span.get_span_context()
    assert carrier.pop("traceparent").split("-")[1:3] == [
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
    ]
    assert carrier == {"baggage": "session.id=s-1", "Accept": "text/plain"}
    outside = {"Baggage": "api_key=sk-secret", "Traceparent": TRACEPARENT}
    threadline.inject(outside)  # no span: the traceparent is the caller's to keep
    assert outside == {"Traceparent": TRACEPARENT}


def test_extract_reads_opentelemetry_baggage_encoding() -> None:
    """OpenTelemetry's own propagator (the MCP SDK's injection) writes a space as "+"."""
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    carrier: dict[str, str] = {}
    W3CBaggagePropagator().inject(
        carrier, otel_baggage.set_baggage("session.id", "team a+b", otel_context.Context())
    )
    assert threadline.current_session(threadline.extract(carrier)) == {"session.id": "team a+b"}
    ours: dict[str, str] = {}
    with threadline.session("team a+b"):
        threadline.inject(ours)
    assert threadline.current_session(threadline.extract(ours)) == {"session.id": "team a+b"}


def test_malformed_tracestate_is_dropped_quietly(caplog: Any) -> None:
    """The trace continues without the tracestate, and hostile members flood no log."""
    good = threadline.extract(
        {"traceparent": TRACEPARENT, "tracestate": "vendor=a, tenant@sys=b ,"},
        context=otel_context.Context(),
    )
    state = trace.get_current_span(good).get_span_context().trace_state
    assert dict(state) == {"vendor": "a", "tenant@sys": "b"}

    with caplog.at_level(logging.DEBUG):
        for tracestate in ["UPPER=x", "a=b,=c", "a=" + "\x00", "a=b,a b=c", "k=v=" * 100]:
            ctx = threadline.extract(
                {"traceparent": TRACEPARENT, "tracestate": tracestate},
                context=otel_context.Context(),
            )
            span_context = trace.get_current_span(ctx).get_span_context()
            assert span_context.is_valid
            assert span_context.trace_id == int(TRACE_ID, 16)
            assert dict(span_context.trace_state) == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("malformed tracestate" in r.getMessage() for r in caplog.records) == 5


@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 255),
    state=st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9_\-*/]{0,8}", fullmatch=True),
            st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
        ),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ),
)
@settings(max_examples=200, deadline=None)
def test_inject_writes_trace_context_as_the_w3c_propagator_does(
    trace_id: int, span_id: int, flags: int, state: list[tuple[str, str]]
) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    span_context = trace.SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(flags),
        trace_state=trace.TraceState(state),
    )
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
    ours: dict[str, str] = {}
    threadline.inject(ours, ctx)
    theirs: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(theirs, ctx)
    assert ours == theirs


def test_baggage_and_tracestate_sent_as_several_header_lines_are_read_as_one_list(
    telemetry: Telemetry,
) -> None:
    """W3C: a list field (baggage, tracestate) may come as several header lines, which a
    multi-valued carrier holds as a list; several traceparents are still no parent."""
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    carrier = {
        "traceparent": parent,
        "tracestate": ["vendor1=a", "vendor2=b"],
        "baggage": ["session.id=s-1", "user.id=u-1,tenant=t"],
    }
    with threadline.continue_trace(carrier):
        threadline.inference("m", provider="openai").end()
    span = telemetry.find("chat m")
    assert span.attributes[semconv.SESSION_ID] == "s-1"
    assert span.attributes[semconv.USER_ID] == "u-1"
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "b7ad6b7169203331"
    ctx = threadline.extract(carrier)
    assert trace.get_current_span(ctx).get_span_context().trace_state.to_header() == (
        "vendor1=a,vendor2=b"
    )
    # two traceparents: neither is the parent; a list over the member limit is dropped whole
    assert (
        not trace.get_current_span(threadline.extract({"traceparent": [parent, parent]}))
        .get_span_context()
        .is_valid
    )
    assert (
        threadline.current_session(threadline.extract({"baggage": ["session.id=s-1"] * 181})) == {}
    )


def test_each_malformed_baggage_member_is_dropped_with_a_debug_log(
    caplog: Any,
) -> None:
    """Hostile members are dropped, and each drop is told at debug level; a member of a key
    threadline does not read is not malformed, and is passed over without a word."""
    empty = otel_context.Context()
    members = {
        "session.id=\u00e9\ud800": "malformed baggage member",  # not ASCII (a lone surrogate)
        "session.id": "malformed baggage member",  # no value
        "session.id=%FF%FE": "not UTF-8",
        "user.id=" + "u" * 5000: "malformed baggage member",  # over one member's size
    }
    for member, told in members.items():
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="threadline"):
            ctx = threadline.extract({"baggage": member}, context=empty)
        assert otel_baggage.get_all(ctx) == {}
        assert any(told in record.getMessage() for record in caplog.records), member
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="threadline"):
        ctx = threadline.extract({"baggage": "other.key=1,session.id=s-1"}, context=empty)
    assert otel_baggage.get_all(ctx) == {"session.id": "s-1"}
    assert not caplog.records
