"""fetch.py: bounded concurrency, rows written once from the calling thread, errors, the manifest."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.exceptions import DataForSeoPaymentError, DataForSeoServerError
from airflow_provider_dataforseo.fetch import FetchSummary, Row, fetch_bulk_pages_summary, rows_for_chunk
from airflow_provider_dataforseo.ratelimit import RequestLimiter
from airflow_provider_dataforseo.responses import TaskResult
from airflow_provider_dataforseo.targets import TargetSet, normalise_targets

if TYPE_CHECKING:
    from collections.abc import Callable

ENDPOINT = api.BULK_PAGES_SUMMARY_PATH
WAIT = 10  # seconds: only reached when the code under test is broken


def echo_url(target: str) -> str:
    """How the fake API echoes a target in ``url``: host uppercased, domains as their www root page."""
    if "://" not in target:
        return f"https://www.{target}/"
    scheme, rest = target.split("://", 1)
    host, _, path = rest.partition("/")
    return f"{scheme}://{host.upper()}/{path}"


def fake_result(
    chunk: list[str], *, missing: frozenset[str] = frozenset(), stray: bool = False
) -> TaskResult:
    """A task answering every target of ``chunk`` but ``missing``, in reverse order."""
    items: list[dict[str, Any]] = [
        {"type": "backlinks_page_summary", "url": echo_url(target), "rank": len(target)}
        for target in reversed(chunk)
        if target not in missing
    ]
    if stray:
        items.append({"type": "backlinks_page_summary", "url": f"https://stray.example/{chunk[0]}"})
    return TaskResult(
        task_id=f"task:{chunk[0]}",
        endpoint=ENDPOINT,
        cost_usd=api.COST_PER_REQUEST_USD + api.COST_PER_ITEM_USD * len(items),
        items=items,
    )


def raw_inputs() -> list[str]:
    """Domains, subdomains and pages of 40 main domains, with duplicate spellings."""
    raw: list[str] = []
    for i in range(40):
        domain = f"site{i}.co.uk" if i % 2 else f"site{i}.com"
        raw += [domain, f"https://{domain}/", f"https://www.{domain}/page/{i}", f"docs.{domain}"]
        if i % 5 == 0:
            raw += [f"WWW.{domain.upper()}", f"https://{domain}/#top"]
    return raw


@pytest.fixture
def target_set() -> TargetSet:
    return normalise_targets(raw_inputs())


@pytest.fixture
def chunks(target_set: TargetSet) -> list[list[str]]:
    planned = plan_chunks(target_set.targets, max_targets=10, max_main_domains=3)
    assert len(planned) >= 14
    return planned


class Sink:
    """Collects rows and checks it is only called from the thread that called fetch."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.calls = 0
        self.thread = threading.get_ident()

    def __call__(self, rows: list[Row]) -> None:
        assert threading.get_ident() == self.thread
        self.calls += 1
        self.rows.extend(rows)


def test_all_rows_written_once_with_target_inputs_task_and_item(
    target_set: TargetSet, chunks: list[list[str]]
) -> None:
    missing = frozenset(target_set.targets[5::7])
    sink = Sink()

    def post(chunk: list[str]) -> TaskResult:
        return fake_result(chunk, missing=missing)

    summary = fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=4)

    assert sink.calls == len(chunks)
    answered = [t for t in target_set.targets if t not in missing]
    assert sorted(row["target"] for row in sink.rows) == sorted(answered)
    for row in sink.rows:
        target = row["target"]
        assert set(row) == {"target", "inputs", "task_id", "item"}
        assert row["inputs"] == target_set.inputs_of(target)
        chunk = next(c for c in chunks if target in c)
        assert row["task_id"] == f"task:{chunk[0]}"
        assert row["item"] == {"type": "backlinks_page_summary", "url": echo_url(target), "rank": len(target)}
    assert summary.missing_targets == [t for t in target_set.targets if t in missing]
    assert summary.targets == len(target_set) == 160
    assert summary.planned_requests == summary.requests == len(chunks)
    assert summary.items == len(answered)
    assert summary.unmatched_items == 0
    assert sorted(summary.task_ids) == sorted(f"task:{chunk[0]}" for chunk in chunks)
    expected_cost = len(chunks) * api.COST_PER_REQUEST_USD + len(answered) * api.COST_PER_ITEM_USD
    assert summary.cost_usd == pytest.approx(expected_cost)


def test_rows_keep_every_original_input(target_set: TargetSet, chunks: list[list[str]]) -> None:
    sink = Sink()
    fetch_bulk_pages_summary(target_set, chunks, fake_result, sink, max_active_requests=2)
    by_target = {row["target"]: row for row in sink.rows}
    assert by_target["site0.com"]["inputs"] == ["site0.com", "WWW.SITE0.COM"]
    assert by_target["https://site0.com/"]["inputs"] == ["https://site0.com/", "https://site0.com/#top"]
    assert by_target["docs.site1.co.uk"]["inputs"] == ["docs.site1.co.uk"]


def test_missing_targets_in_input_order_whatever_the_completion_order(target_set: TargetSet) -> None:
    chunks = plan_chunks(target_set.targets, max_targets=10, max_main_domains=3)
    missing = frozenset(target_set.targets[::3])
    order: list[int] = []
    release = [threading.Event() for _ in chunks]
    lock = threading.Lock()

    def post(chunk: list[str]) -> TaskResult:
        index = chunks.index(chunk)
        if index + 1 < len(chunks) and index % 2 == 0:
            assert release[index].wait(WAIT)  # even chunks finish after the next odd one
        with lock:
            order.append(index)
        if index % 2 == 1:
            release[index - 1].set()
        return fake_result(chunk, missing=missing)

    summary = fetch_bulk_pages_summary(target_set, chunks, post, Sink(), max_active_requests=2)
    assert order[:2] == [1, 0]
    assert summary.missing_targets == [t for t in target_set.targets if t in missing]


def test_unmatched_items_are_written_with_a_null_target(
    target_set: TargetSet, chunks: list[list[str]]
) -> None:
    sink = Sink()

    def post(chunk: list[str]) -> TaskResult:
        return fake_result(chunk, stray=True)

    summary = fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=3)
    stray = [row for row in sink.rows if row["target"] is None]
    assert len(stray) == len(chunks) == summary.unmatched_items
    assert all(row["inputs"] == [] for row in stray)
    assert sorted(row["item"]["url"] for row in stray) == sorted(
        f"https://stray.example/{c[0]}" for c in chunks
    )
    assert summary.items == len(target_set) + len(chunks)
    assert summary.missing_targets == []


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_never_more_than_max_active_requests_in_flight(
    target_set: TargetSet, chunks: list[list[str]], limit: int
) -> None:
    lock = threading.Lock()
    active = 0
    peak = 0
    full = threading.Event()  # set once `limit` requests are in flight together

    def post(chunk: list[str]) -> TaskResult:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active == limit:
                full.set()
        try:
            assert full.wait(WAIT)  # the first `limit` requests hold until all of them are in flight
            return fake_result(chunk)
        finally:
            with lock:
                active -= 1

    sink = Sink()
    summary = fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=limit)
    assert peak == limit
    assert summary.requests == len(chunks)
    assert len(sink.rows) == len(target_set)


class _SetOnError(logging.Handler):
    """Sets an event when the fetch loop logs a failed request (i.e. after it saw the error)."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.ERROR)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


def _with_error_handler(event: threading.Event, run: Callable[[], object]) -> object:
    logger = logging.getLogger("airflow_provider_dataforseo.fetch")
    handler = _SetOnError(event)
    logger.addHandler(handler)
    try:
        return run()
    finally:
        logger.removeHandler(handler)


def test_permanent_error_stops_new_requests_writes_in_flight_and_reraises(
    target_set: TargetSet, chunks: list[list[str]]
) -> None:
    seen_error = threading.Event()
    posted: list[int] = []
    lock = threading.Lock()
    failure = DataForSeoPaymentError("Access denied.", status_code=40204, task_id="t-err", endpoint=ENDPOINT)

    def post(chunk: list[str]) -> TaskResult:
        index = chunks.index(chunk)
        with lock:
            posted.append(index)
        if index == 1:
            raise failure
        if index == 0:
            assert seen_error.wait(WAIT)  # still in flight when the error is handled
        return fake_result(chunk)

    sink = Sink()
    with pytest.raises(DataForSeoPaymentError) as info:
        _with_error_handler(
            seen_error,
            lambda: fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=2),
        )
    # the same kind and status, the message naming the request (the original is the cause)
    error = info.value
    assert error.__cause__ is failure
    assert (type(error), error.status_code, error.task_id, error.endpoint) == (
        DataForSeoPaymentError,
        40204,
        "t-err",
        ENDPOINT,
    )
    assert error.status_message.startswith(f"Access denied. (request of {len(chunks[1])} targets: ")
    assert not error.retryable
    assert sorted(posted) == [0, 1]  # nothing started after the failure
    assert sink.calls == 1
    assert sorted(row["target"] for row in sink.rows) == sorted(chunks[0])


def test_the_first_error_wins_over_later_in_flight_errors(
    target_set: TargetSet, chunks: list[list[str]]
) -> None:
    seen_error = threading.Event()
    first = DataForSeoPaymentError("Access denied.", status_code=40204)
    later = DataForSeoServerError("Internal error.", status_code=50000)

    def post(chunk: list[str]) -> TaskResult:
        index = chunks.index(chunk)
        if index == 2:
            raise first
        if index in (0, 1):
            assert seen_error.wait(WAIT)
            if index == 1:
                raise later
        return fake_result(chunk)

    sink = Sink()
    with pytest.raises(DataForSeoPaymentError) as info:
        _with_error_handler(
            seen_error,
            lambda: fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=3),
        )
    assert info.value.__cause__ is first
    assert info.value.status_code == 40204
    assert sorted(row["target"] for row in sink.rows) == sorted(chunks[0])


def test_no_chunks_means_no_request(target_set: TargetSet) -> None:
    def post(chunk: list[str]) -> TaskResult:
        raise AssertionError("no request expected")

    sink = Sink()
    summary = fetch_bulk_pages_summary(target_set, [], post, sink, max_active_requests=5)
    assert sink.calls == 0
    assert (summary.requests, summary.planned_requests, summary.items, summary.cost_usd) == (0, 0, 0, 0.0)


@pytest.mark.parametrize("limit", [0, -1])
def test_max_active_requests_below_one_is_refused(target_set: TargetSet, limit: int) -> None:
    # regression: 0 made the loop spin forever without sending anything
    with pytest.raises(ValueError, match="max_active_requests must be at least 1"):
        fetch_bulk_pages_summary(
            target_set, [target_set.targets], fake_result, Sink(), max_active_requests=limit
        )


def test_task_without_id_is_not_listed(target_set: TargetSet) -> None:
    chunk = target_set.targets[:3]

    def post(sent: list[str]) -> TaskResult:
        return TaskResult(task_id=None, endpoint=ENDPOINT, cost_usd=0.02, items=[])

    summary = fetch_bulk_pages_summary(target_set, [chunk], post, Sink(), max_active_requests=1)
    assert summary.task_ids == []
    assert summary.requests == 1
    assert summary.missing_targets == chunk


def test_post_receives_a_copy_of_each_chunk(target_set: TargetSet) -> None:
    chunk = target_set.targets[:4]
    original = list(chunk)

    def post(sent: list[str]) -> TaskResult:
        assert sent == original
        assert sent is not chunk
        return fake_result(original)

    sink = Sink()
    fetch_bulk_pages_summary(target_set, [chunk], post, sink, max_active_requests=1)
    assert chunk == original
    assert len(sink.rows) == 4


def test_rows_for_chunk_in_chunk_order_then_unmatched() -> None:
    target_set = normalise_targets(["b.com", "HTTPS://A.com/x", "https://a.com/x#frag"])
    chunk = target_set.targets
    result = TaskResult(
        task_id="t1",
        endpoint=ENDPOINT,
        cost_usd=0.02009,
        items=[{"url": "https://a.com/x"}, {"url": "https://nowhere.org/"}, {"url": "https://www.b.com/"}],
    )
    rows, missing = rows_for_chunk(result, chunk, target_set)
    assert rows == [
        {"target": "b.com", "inputs": ["b.com"], "task_id": "t1", "item": {"url": "https://www.b.com/"}},
        {
            "target": "https://a.com/x",
            "inputs": ["HTTPS://A.com/x", "https://a.com/x#frag"],
            "task_id": "t1",
            "item": {"url": "https://a.com/x"},
        },
        {"target": None, "inputs": [], "task_id": "t1", "item": {"url": "https://nowhere.org/"}},
    ]
    assert missing == []


MANIFEST_KEYS = {
    "uri",
    "targets",
    "items",
    "requests",
    "cost_usd",
    "missing_targets",
    "unmatched_items",
    "rejected_targets",
    "unresolved_targets",
}


def test_manifest_has_exactly_the_documented_keys() -> None:
    summary = FetchSummary(
        targets=12,
        planned_requests=3,
        requests=3,
        items=10,
        cost_usd=0.0603000000001,
        missing_targets=["a.com", "https://b.com/"],
        unmatched_items=1,
        task_ids=["t1", "t2", "t3"],
    )
    manifest = summary.manifest("s3://bucket/run/")
    assert manifest == {
        "uri": "s3://bucket/run/",
        "targets": 12,
        "items": 10,
        "requests": 3,
        "cost_usd": 0.0603,
        "missing_targets": 2,
        "unmatched_items": 1,
        # added with 40501 bisection: the targets the API refused, by name (none here)
        "rejected_targets": [],
        # added with the group-testing isolation: refused requests it could not settle
        "unresolved_targets": [],
    }
    assert summary.manifest(None)["uri"] is None


def test_manifest_of_a_real_fetch(target_set: TargetSet, chunks: list[list[str]]) -> None:
    summary = fetch_bulk_pages_summary(target_set, chunks, fake_result, Sink(), max_active_requests=5)
    manifest = summary.manifest("file:///tmp/out/")
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["targets"] == manifest["items"] == 160
    assert manifest["requests"] == len(chunks)
    assert manifest["missing_targets"] == 0
    assert manifest["cost_usd"] == round(len(chunks) * 0.02 + 160 * 0.00003, 6)


def test_freed_slots_are_refilled_before_finished_rows_are_written(target_set: TargetSet) -> None:
    # one request in flight: when chunk 1 finishes, chunk 2 must already be on its way while the
    # (slow) sink writes chunk 1's rows; a loop that writes first would leave the slot idle
    chunks = [target_set.targets[:3], target_set.targets[3:6]]
    second_started = threading.Event()

    def post(chunk: list[str]) -> TaskResult:
        if chunk == chunks[1]:
            second_started.set()
        return fake_result(chunk)

    waited: list[bool] = []

    def sink(rows: list[Row]) -> None:
        if rows and rows[0]["target"] in chunks[0]:
            waited.append(second_started.wait(WAIT))

    summary = fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=1)
    assert waited == [True]
    assert summary.requests == 2 and summary.items == 6


def test_standby_chunks_take_a_request_slot_freed_while_earlier_replies_are_decoded(
    target_set: TargetSet, chunks: list[list[str]]
) -> None:
    # two requests in flight at most (the limiter), two chunks standing by: while the first two
    # replies are still being decoded (their slots freed once their bodies were read), the next
    # two requests are already on their way; without standby chunks they would wait
    limiter = RequestLimiter(max_in_flight=2, requests_per_minute=None)
    first_two = {chunks[0][0], chunks[1][0]}
    sent: list[str] = []
    both_sent_meanwhile = threading.Event()
    decoded = threading.Event()

    def post(chunk: list[str]) -> TaskResult:
        with limiter.request():  # the HTTP exchange: request out, body read
            sent.append(chunk[0])
            if len(sent) == 4:
                both_sent_meanwhile.set()
        # the first two "decode" until two more requests have been sent
        if chunk[0] in first_two and both_sent_meanwhile.wait(WAIT):
            decoded.set()
        return fake_result(chunk)

    sink = Sink()
    summary = fetch_bulk_pages_summary(
        target_set, chunks, post, sink, max_active_requests=2, standby_chunks=2
    )
    assert decoded.is_set()
    assert limiter.peak_in_flight <= 2  # the limiter, not the pool, bounds what is in flight
    assert summary.requests == len(chunks) and len(sink.rows) == len(target_set)


def test_standby_chunks_below_zero_are_refused(target_set: TargetSet) -> None:
    with pytest.raises(ValueError, match="standby_chunks must be at least 0, got -1"):
        fetch_bulk_pages_summary(
            target_set, [target_set.targets], fake_result, Sink(), max_active_requests=1, standby_chunks=-1
        )


def test_raw_items_give_the_same_rows_as_dict_items(target_set: TargetSet) -> None:
    import msgspec

    from airflow_provider_dataforseo.checkpoint import encode_rows
    from airflow_provider_dataforseo.responses import decode_reply, parse_task_response

    chunk = target_set.targets[:12]
    result = fake_result(chunk, missing=frozenset(chunk[:2]), stray=True)
    body = msgspec.json.encode(
        {
            "status_code": 20000,
            "status_message": "Ok.",
            "tasks": [
                {
                    "id": "t-1",
                    "status_code": 20000,
                    "status_message": "Ok.",
                    "cost": result.cost_usd,
                    "result": [{"items_count": len(result.items), "items": result.items}],
                }
            ],
        }
    )
    as_dicts = parse_task_response(decode_reply(body), endpoint=ENDPOINT)
    as_raw = parse_task_response(decode_reply(body, raw_items=True), endpoint=ENDPOINT)
    assert as_dicts.raw_items is None and as_raw.items == []
    assert as_raw.raw_items is not None and as_raw.item_count == as_dicts.item_count == 11
    dict_rows, dict_missing = rows_for_chunk(as_dicts, chunk, target_set)
    raw_rows, raw_missing = rows_for_chunk(as_raw, chunk, target_set)
    assert raw_missing == dict_missing == chunk[:2]
    assert encode_rows(raw_rows) == encode_rows(dict_rows)  # byte for byte
    assert raw_rows[-1]["target"] is None  # the stray item is kept, unmatched


class _Interrupted(BaseException):
    """Stands for what Airflow raises in the task's thread (execution_timeout, a kill signal)."""


def test_an_interruption_stores_the_replies_in_flight_and_leaves_hung_ones_behind(
    target_set: TargetSet,
) -> None:
    chunks = [target_set.targets[:3], target_set.targets[3:6], target_set.targets[6:9]]
    release_second, release_third = threading.Event(), threading.Event()
    returned: list[int] = []

    def post(chunk: list[str]) -> TaskResult:
        index = chunks.index(chunk)
        if index == 1:
            release_second.wait(WAIT)
        if index == 2:
            release_third.wait(WAIT)  # hangs until the test is over
        returned.append(index)
        return fake_result(chunk)

    def sink(rows: list[Row]) -> None:
        if rows and rows[0]["target"] in chunks[0]:
            release_second.set()  # the second reply arrives while the interruption is handled
            raise _Interrupted

    stored: list[int] = []
    try:
        with pytest.raises(_Interrupted):
            fetch_bulk_pages_summary(
                target_set,
                chunks,
                post,
                sink,
                max_active_requests=3,
                on_chunk=lambda outcome: stored.append(outcome.index),
                interrupt_grace_seconds=1,
            )
        # the paid-for second reply is stored; the fetch did not wait for the hung third one
        assert stored == [1]
        assert 2 not in returned
    finally:
        release_third.set()


def test_an_interruption_starts_nothing_new(target_set: TargetSet) -> None:
    chunks = [target_set.targets[i : i + 2] for i in range(0, 12, 2)]
    sent: list[int] = []

    def post(chunk: list[str]) -> TaskResult:
        sent.append(chunks.index(chunk))
        return fake_result(chunk)

    def sink(rows: list[Row]) -> None:
        raise _Interrupted

    with pytest.raises(_Interrupted):
        fetch_bulk_pages_summary(target_set, chunks, post, sink, max_active_requests=1)
    # chunk 1 was queued before chunk 0 was written (sent, or dropped if not started yet); no more
    assert sent in ([0], [0, 1])


def test_an_interruption_stops_retries_already_running_in_worker_threads(target_set: TargetSet) -> None:
    from airflow_provider_dataforseo.ratelimit import RequestLimiter, RequestsStoppedError

    limiter = RequestLimiter(max_in_flight=2, requests_per_minute=None)
    chunks = [target_set.targets[:3], target_set.targets[3:6]]
    release, in_flight = threading.Event(), threading.Event()
    sent: list[str] = []

    def post(chunk: list[str]) -> TaskResult:
        if chunk == chunks[0]:
            in_flight.wait(WAIT)
        if chunk == chunks[1]:
            with limiter.request():  # the first attempt is in flight when the task is interrupted
                sent.append("attempt 1")
                in_flight.set()
                release.wait(WAIT)
            with limiter.request():  # what the hook's retry would do next: refused
                sent.append("attempt 2")
        return fake_result(chunk)

    def sink(rows: list[Row]) -> None:
        if rows and rows[0]["target"] in chunks[0]:
            release.set()
            raise _Interrupted

    with pytest.raises(_Interrupted):
        fetch_bulk_pages_summary(
            target_set,
            chunks,
            post,
            sink,
            max_active_requests=2,
            interrupt_grace_seconds=WAIT,
            on_interrupt=limiter.close,
        )
    assert sent == ["attempt 1"] and limiter.closed and limiter.in_flight == 0
    with pytest.raises(RequestsStoppedError):
        limiter.acquire()


def test_a_closed_limiter_wakes_requests_waiting_for_a_slot() -> None:
    from airflow_provider_dataforseo.ratelimit import RequestLimiter, RequestsStoppedError

    limiter = RequestLimiter(max_in_flight=1, requests_per_minute=None)
    limiter.acquire()
    outcome: list[str] = []

    def waiter() -> None:
        try:
            limiter.acquire()
            outcome.append("started")
        except RequestsStoppedError:
            outcome.append("stopped")

    thread = threading.Thread(target=waiter)
    thread.start()
    limiter.close()
    thread.join(WAIT)
    assert outcome == ["stopped"]
    limiter.release()  # the request in flight finishes normally
    assert limiter.in_flight == 0


def test_the_operator_on_kill_stops_further_requests() -> None:
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    operator = BulkPagesSummaryOperator(task_id="x", targets=["a.com"])
    operator.on_kill()  # before any hook exists: nothing to do
    limiter = operator.hook.limiter
    operator.on_kill()
    assert limiter.closed
