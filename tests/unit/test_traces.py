"""Reading traces back from the trace stream, showing them, and ``streamcart trace``."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import fakeredis
import pytest
from click.testing import CliRunner
from fakeredis import FakeAsyncRedis
from rich.console import Console

from streamcart import cli
from streamcart.bus.keys import Keys
from streamcart.errors import InvalidError
from streamcart.telemetry import traces
from streamcart.telemetry.spans import SpanEvent, SpanRecord, from_fields, to_fields
from streamcart.telemetry.trace_view import (
    format_duration,
    summary_table,
    trace_data,
    trace_tree,
)
from streamcart.telemetry.traces import load_trace, recent_traces, summarise
from tests.unit.support import KEYS

STREAM = KEYS.traces()
CLI_STREAM = Keys().traces()  # the command's default namespace
BASE_MS = 1_700_000_000_000
CHECKOUT, REFUND, OTHER = "c" * 32, "d" * 32, "e" * 32
NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a usage error must not get that far


def span(
    trace_id: str,
    span_id: str,
    name: str,
    service: str,
    start_ms: float,
    end_ms: float,
    *,
    parent: str = "",
    base_ms: int = BASE_MS,
    **extra: Any,
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id.ljust(16, "0"),
        parent_id=parent.ljust(16, "0") if parent else "",
        name=name,
        service=service,
        start_ns=int((base_ms + start_ms) * 1_000_000),
        end_ns=int((base_ms + end_ms) * 1_000_000),
        **extra,
    )


def at(ms: float, base_ms: int = BASE_MS) -> int:
    return int((base_ms + ms) * 1_000_000)


def checkout(base_ms: int = BASE_MS) -> list[SpanRecord]:
    """A checkout: gateway -> orders (retried) -> payment (failed), gateway -> mail,
    and an audit span whose parent was never stored. In export order."""
    return [
        span(CHECKOUT, "3", "payment.charge", "payment", 30, 55, parent="2", kind="client",
             status="error", status_message="card declined", base_ms=base_ms,
             events=[SpanEvent(name="exception", at_ns=at(50, base_ms),
                               attributes={"exception.type": "CardDeclined"})]),
        span(CHECKOUT, "2", "orders.place", "orders", 10, 60, parent="1", kind="consumer",
             base_ms=base_ms,
             events=[SpanEvent(name="retry", at_ns=at(22.5, base_ms), attributes={"attempt": 2})]),
        span(CHECKOUT, "4", "mail.send", "mail", 70, 90, parent="1", kind="consumer",
             base_ms=base_ms),
        span(CHECKOUT, "1", "POST /api/orders", "gateway", 0, 100, kind="server", status="ok",
             base_ms=base_ms),
        span(CHECKOUT, "5", "audit.record", "audit", 50, 100, parent="f" * 16, base_ms=base_ms),
    ]  # fmt: skip


async def store(redis: FakeAsyncRedis, *spans: SpanRecord) -> None:
    """Store spans as the exporter does: each when it ended (its entry id's time)."""
    for record in sorted(spans, key=lambda s: s.end_ns):
        await redis.xadd(STREAM, to_fields(record), id=f"{record.end_ns // 1_000_000}-*")


def render(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def count_reads(redis: FakeAsyncRedis) -> list[int]:
    """Count the client's XREVRANGE calls (one per chunk read)."""
    calls: list[int] = []
    original = redis.xrevrange

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await original(*args, **kwargs)

    redis.xrevrange = counting  # type: ignore[method-assign]
    return calls


# -- recent_traces -------------------------------------------------------------


async def test_traces_are_listed_newest_first_with_their_spans_grouped(
    fake_redis: FakeAsyncRedis,
) -> None:
    spans = checkout()
    refund = [
        span(REFUND, "a", "POST /api/refunds", "gateway", 40, 45, kind="server", status="ok"),
        span(REFUND, "b", "payment.refund", "payment", 41, 44, parent="a"),
    ]
    # Interleaved in the stream: the refund started after the checkout and ended within it.
    await store(fake_redis, spans[0], refund[1], refund[0], *spans[1:])

    first, second = await recent_traces(fake_redis, KEYS)

    assert first.trace_id == REFUND
    assert (first.root_name, first.root_service, first.span_count) == (
        "POST /api/refunds", "gateway", 2,
    )  # fmt: skip
    assert first.services == ["gateway", "payment"]
    assert (first.start_ns, first.duration_ns) == (at(40), 5_000_000)
    assert not first.error and first.status == "ok"
    assert second.trace_id == CHECKOUT
    assert (second.root_name, second.span_count) == ("POST /api/orders", 5)
    assert second.services == ["audit", "gateway", "mail", "orders", "payment"]
    assert (second.start_ns, second.duration_ns) == (at(0), 100_000_000)
    assert second.error and second.status == "ok"  # a child failed; the root did not


async def test_without_its_root_stored_a_trace_is_named_after_its_earliest_span(
    fake_redis: FakeAsyncRedis,
) -> None:
    await store(fake_redis, *[s for s in checkout() if s.name != "POST /api/orders"])

    (trace,) = await recent_traces(fake_redis, KEYS)

    assert (trace.root_name, trace.root_service) == ("orders.place", "orders")
    assert (trace.start_ns, trace.span_count) == (at(10), 4)


async def test_filters_by_service_errors_and_start_time_and_limits_the_count(
    fake_redis: FakeAsyncRedis,
) -> None:
    # Three one-span traces a second apart; only the middle one failed.
    for i, (service, status) in enumerate(
        [("orders", "ok"), ("payment", "error"), ("orders", "ok")]
    ):
        await store(
            fake_redis, span(f"{i:032x}", "1", f"job{i}", service, i * 1000, i * 1000 + 5,
                             status=status)
        )  # fmt: skip
    names = lambda traces: [t.root_name for t in traces]  # noqa: E731

    assert names(await recent_traces(fake_redis, KEYS)) == ["job2", "job1", "job0"]
    assert names(await recent_traces(fake_redis, KEYS, service="orders")) == ["job2", "job0"]
    assert names(await recent_traces(fake_redis, KEYS, service="mail")) == []
    assert names(await recent_traces(fake_redis, KEYS, errors_only=True)) == ["job1"]
    assert names(await recent_traces(fake_redis, KEYS, since_ms=BASE_MS + 1000)) == [
        "job2", "job1",
    ]  # fmt: skip
    assert names(await recent_traces(fake_redis, KEYS, limit=2)) == ["job2", "job1"]
    assert names(await recent_traces(fake_redis, KEYS, service="orders", limit=1)) == ["job2"]


async def test_since_leaves_out_a_trace_that_started_before_even_if_it_ended_after(
    fake_redis: FakeAsyncRedis,
) -> None:
    await store(fake_redis, *checkout())  # from 0 to 100 ms

    assert await recent_traces(fake_redis, KEYS, since_ms=BASE_MS + 50) == []
    assert len(await recent_traces(fake_redis, KEYS, since_ms=BASE_MS)) == 1


async def test_a_listing_stops_reading_once_the_newest_traces_are_complete(
    fake_redis: FakeAsyncRedis,
) -> None:
    for i in range(100):  # a trace of two spans every 10 ms, 200 entries
        await store(
            fake_redis,
            span(f"{i:032x}", "2", "child", "orders", i * 10 + 1, i * 10 + 2, parent="1"),
            span(f"{i:032x}", "1", "root", "gateway", i * 10, i * 10 + 3),
        )
    reads = count_reads(fake_redis)

    traces = await recent_traces(fake_redis, KEYS, limit=3, chunk=4, clock_skew_ms=0)

    assert [t.trace_id for t in traces] == [f"{i:032x}" for i in (99, 98, 97)]
    assert all(t.span_count == 2 for t in traces)
    assert len(reads) <= 3  # 12 of the 200 entries, not all 50 chunks


async def test_a_listing_reads_no_more_than_its_scan_bound(fake_redis: FakeAsyncRedis) -> None:
    for i in range(50):
        await store(fake_redis, span(f"{i:032x}", "1", f"job{i}", "orders", i, i + 0.5))

    traces = await recent_traces(fake_redis, KEYS, limit=50, max_scan=10, chunk=4)

    assert [t.root_name for t in traces] == [f"job{i}" for i in range(49, 39, -1)]


# -- load_trace ----------------------------------------------------------------


async def test_a_trace_loads_with_exactly_its_spans_in_start_order(
    fake_redis: FakeAsyncRedis,
) -> None:
    spans = checkout()
    other = span(OTHER, "9", "elsewhere", "orders", 20, 30)
    await store(fake_redis, spans[0], other, *spans[1:])

    loaded = await load_trace(fake_redis, KEYS, CHECKOUT)

    assert [s.name for s in loaded] == [
        "POST /api/orders", "orders.place", "payment.charge", "audit.record", "mail.send",
    ]  # fmt: skip
    assert loaded == sorted(spans, key=lambda s: s.start_ns)
    assert await load_trace(fake_redis, KEYS, OTHER) == [other]


async def test_loading_stops_at_entries_older_than_the_roots_start(
    fake_redis: FakeAsyncRedis,
) -> None:
    # An entry of the same trace id stored before the root started: a reader
    # that went past the root's start would return it.
    stale = span(CHECKOUT, "8", "stale", "orders", -500, -400)
    await store(fake_redis, stale)
    for i in range(40):  # unrelated traffic before the checkout
        await store(fake_redis, span(OTHER, f"{i:x}", "noise", "orders", -300 + i, -290 + i))
    await store(fake_redis, *checkout())
    reads = count_reads(fake_redis)

    loaded = await load_trace(fake_redis, KEYS, CHECKOUT, chunk=4, clock_skew_ms=0)

    assert "stale" not in [s.name for s in loaded]
    assert len(loaded) == 5
    assert len(reads) <= 3  # the 5 spans and what follows them, not the 46 entries


async def test_without_a_root_loading_scans_the_whole_stream(fake_redis: FakeAsyncRedis) -> None:
    stale = span(CHECKOUT, "8", "early", "orders", -500, -400, parent="1")
    await store(fake_redis, stale)
    for i in range(40):
        await store(fake_redis, span(OTHER, f"{i:x}", "noise", "orders", -300 + i, -290 + i))
    await store(fake_redis, *[s for s in checkout() if s.parent_id])

    loaded = await load_trace(fake_redis, KEYS, CHECKOUT, chunk=4)

    assert loaded[0].name == "early"
    assert len(loaded) == 5


async def test_loading_decodes_only_the_entries_of_its_trace(
    fake_redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another trace's spans exported while the checkout ran, interleaved with its own.
    noise = [span(OTHER, f"{i:x}", "noise", "orders", i * 3, i * 3 + 1) for i in range(30)]
    await store(fake_redis, *checkout(), *noise)
    decoded: list[dict[str, str]] = []
    monkeypatch.setattr(traces, "from_fields", lambda f: decoded.append(f) or from_fields(f))

    assert len(await load_trace(fake_redis, KEYS, CHECKOUT)) == 5
    assert len(decoded) == 5


async def test_loading_skips_entries_that_are_not_spans(fake_redis: FakeAsyncRedis) -> None:
    await store(fake_redis, *checkout())
    await fake_redis.xadd(STREAM, {"trace_id": CHECKOUT, "span": "{not json"})
    await fake_redis.xadd(STREAM, {"trace_id": CHECKOUT})

    assert len(await load_trace(fake_redis, KEYS, CHECKOUT)) == 5


async def test_a_trace_id_is_normalised_or_refused(fake_redis: FakeAsyncRedis) -> None:
    await store(fake_redis, *checkout())

    assert len(await load_trace(fake_redis, KEYS, CHECKOUT.upper())) == 5
    assert await load_trace(fake_redis, KEYS, "0" * 32) == []
    for bad in ("c" * 31, "g" * 32, "c" * 33, ""):
        with pytest.raises(InvalidError, match="32 hex digits"):
            await load_trace(fake_redis, KEYS, bad)


# -- rendering -----------------------------------------------------------------


def column_of(text: str, needle: str) -> tuple[int, int]:
    """The first line with ``needle``, and the column its label starts at (after the guides)."""
    for row, line in enumerate(text.splitlines()):
        if needle in line:
            return row, len(line) - len(line.lstrip(" │├└─"))
    raise AssertionError(f"{needle!r} not in:\n{text}")


def test_the_tree_nests_spans_under_their_parents_in_start_order() -> None:
    # Given in export order: the tree must still follow parents and start times.
    text = render(trace_tree(checkout()))

    root, orders, retry, payment, exception, mail, audit = (
        column_of(text, needle)
        for needle in (
            "POST /api/orders", "orders.place", "retry", "payment.charge", "exception",
            "mail.send", "audit.record",
        )
    )  # fmt: skip
    rows = [root[0], orders[0], retry[0], payment[0], exception[0], mail[0], audit[0]]
    assert rows == sorted(rows) and len(set(rows)) == 7
    assert root[1] < orders[1] < payment[1] < exception[1]
    assert retry[1] > orders[1]  # the event is a line under its span
    assert mail[1] == orders[1]  # a second child of the root
    assert audit[1] == root[1]  # the orphan hangs off the top
    assert CHECKOUT in text.splitlines()[0]


def test_each_span_shows_service_kind_duration_status_and_events() -> None:
    lines = render(trace_tree(checkout())).splitlines()
    line = lambda needle: next(row for row in lines if needle in row)  # noqa: E731

    assert "payment" in line("payment.charge") and "client" in line("payment.charge")
    assert "25.0 ms" in line("payment.charge")
    assert "error: card declined" in line("payment.charge")
    assert "100 ms" in line("POST /api/orders") and " ok" in line("POST /api/orders")
    assert "+12.5 ms" in line("retry") and "attempt=2" in line("retry")
    assert "exception.type=CardDeclined" in line("exception")
    assert "orphan" in line("audit.record") and "f" * 16 in line("audit.record")
    assert "orphan" not in line("mail.send")


def test_the_timeline_bar_places_a_span_within_the_trace() -> None:
    lines = render(trace_tree(checkout())).splitlines()
    bar = lambda needle: next(row for row in lines if needle in row).split("|")[1]  # noqa: E731

    assert bar("POST /api/orders") == "█" * 30  # the whole trace
    assert bar("mail.send") == "·" * 21 + "█" * 6 + "·" * 3  # 70 to 90 ms of 100
    assert bar("audit.record") == "·" * 15 + "█" * 15  # the second half
    # A span too short to see still gets a column.
    blip = span(CHECKOUT, "6", "blip", "orders", 99.99, 100, parent="1")
    assert render(trace_tree([*checkout(), blip])).count("·" * 29 + "█|") == 1


def test_the_summary_table_shows_each_trace() -> None:
    text = render(summary_table([summarise(checkout())]))

    for expected in (CHECKOUT, "gateway", "POST /api/orders", "100 ms", "error", "5"):
        assert expected in text


def test_durations_keep_about_three_significant_digits() -> None:
    assert [format_duration(ns) for ns in (42_000, 1_250_000, 12_500_000, 125_400_000)] == [
        "0.042 ms", "1.25 ms", "12.5 ms", "125 ms",
    ]  # fmt: skip


def test_the_json_form_has_the_summary_every_span_and_the_orphans() -> None:
    data = json.loads(json.dumps(trace_data(checkout())))

    assert data["summary"]["trace_id"] == CHECKOUT
    assert [s["name"] for s in data["spans"]][:2] == ["POST /api/orders", "orders.place"]
    assert data["spans"][2]["events"][0]["attributes"] == {"exception.type": "CardDeclined"}
    assert data["orphans"] == ["5" + "0" * 15]


# -- the command -----------------------------------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """A fake server every ``streamcart`` command in the test connects to."""
    fake = fakeredis.FakeServer()
    monkeypatch.setattr(
        cli, "connect", lambda url: fakeredis.FakeAsyncRedis(server=fake, decode_responses=True)
    )
    return fake


def seed(server: fakeredis.FakeServer, *spans: SpanRecord) -> None:
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    for record in sorted(spans, key=lambda s: s.end_ns):
        client.xadd(CLI_STREAM, to_fields(record), id=f"{record.end_ns // 1_000_000}-*")


def trace(*args: str, url: str = "redis://fake") -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        cli.main, ["--redis-url", url, "trace", *args]
    )
    return result.exit_code, result.output


def test_trace_list_shows_recent_traces_and_filters_them(server: fakeredis.FakeServer) -> None:
    now_ms = int(time.time() * 1000)
    old = span(OTHER, "1", "nightly.report", "reports", 0, 5, base_ms=now_ms - 3_600_000)
    seed(server, old, *checkout(base_ms=now_ms - 1_000))

    code, output = trace("list")
    assert code == 0, output
    assert CHECKOUT in output and OTHER in output
    assert output.index(CHECKOUT) < output.index(OTHER)  # newest first

    code, output = trace("list", "--since", "10m")
    assert code == 0 and CHECKOUT in output and OTHER not in output

    code, output = trace("list", "--service", "reports", "--json")
    assert code == 0
    assert [t["trace_id"] for t in json.loads(output)] == [OTHER]

    code, output = trace("list", "--errors", "--json")
    assert [t["root_name"] for t in json.loads(output)] == ["POST /api/orders"]


def test_trace_list_says_when_there_is_nothing(server: fakeredis.FakeServer) -> None:
    code, output = trace("list")
    assert code == 0 and "no traces found" in output
    assert trace("list", "--json") == (0, "[]\n")


def test_trace_show_prints_the_tree_or_json(server: fakeredis.FakeServer) -> None:
    seed(server, *checkout())

    code, output = trace("show", CHECKOUT.upper())
    assert code == 0, output
    assert column_of(output, "orders.place")[1] > column_of(output, "POST /api/orders")[1]
    assert "error: card declined" in output

    code, output = trace("show", CHECKOUT, "--json")
    assert code == 0
    assert len(json.loads(output)["spans"]) == 5


def test_an_unknown_trace_exits_1(server: fakeredis.FakeServer) -> None:
    code, output = trace("show", OTHER)
    assert code == 1
    assert f"no trace {OTHER}" in output


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["show", "not-a-trace"], "a trace id is 32 hex digits, got 'not-a-trace'"),
        (["show", "c" * 31], "32 hex digits"),
        (["list", "--since", "10x"], "'10x' is not a duration: use e.g. 30s, 10m, 2h or 1d"),
        (["list", "--since", "m"], "is not a duration"),
        (["list", "--limit", "0"], "0 is not in the range x>=1"),
    ],
)
def test_usage_errors_exit_2_before_touching_redis(args: list[str], hint: str) -> None:
    code, output = trace(*args, url=NO_REDIS)
    assert code == 2, output
    assert hint in " ".join(output.split())


def test_help_describes_the_commands() -> None:
    code, output = trace("--help")
    assert code == 0 and "list" in output and "show" in output
    code, output = trace("list", "--help")
    output = " ".join(output.split())  # as wrapped
    assert code == 0 and "--since DURATION" in output and "30s, 10m, 2h, 1d" in output


async def test_loading_allows_for_hosts_whose_clocks_run_ahead_of_redis(
    fake_redis: FakeAsyncRedis,
) -> None:
    # A span exported (by Redis's clock) 300 ms before its host says it started.
    early = span(CHECKOUT, "8", "early", "orders", -300, -200, parent="1")
    await store(fake_redis, early)
    for i in range(40):
        await store(fake_redis, span(OTHER, f"{i:x}", "noise", "orders", -190 + i, -150 + i))
    await store(fake_redis, *checkout())

    assert "early" not in [s.name for s in await load_trace(
        fake_redis, KEYS, CHECKOUT, chunk=4, clock_skew_ms=0)]  # fmt: skip
    assert "early" in [s.name for s in await load_trace(fake_redis, KEYS, CHECKOUT, chunk=4)]
