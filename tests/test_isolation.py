"""Pure tests of issue 12's faults: refused-target isolation, its money, the deadline's parts,
daemon workers, waits that wake on close, and UTF-8 credentials (no server, no Airflow run)."""

from __future__ import annotations

import base64
import math
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.deadline import Deadline, check_deadline
from airflow_provider_dataforseo.exceptions import (
    DataForSeoAuthenticationError,
    DataForSeoInvalidRequestError,
)
from airflow_provider_dataforseo.fetch import (
    DEFAULT_MAX_ISOLATION_REQUESTS,
    fetch_bulk_pages_summary,
    fetch_chunk,
)
from airflow_provider_dataforseo.isolation import RefusalSearch, request_bound
from airflow_provider_dataforseo.ratelimit import (
    CostBudget,
    CostLimitExceededError,
    RequestLimiter,
    estimate_cost_usd,
    request_cost_bound_usd,
)
from airflow_provider_dataforseo.responses import TaskResult
from airflow_provider_dataforseo.targets import normalise_target, normalise_targets
from airflow_provider_dataforseo.workers import DaemonPool

ENDPOINT = api.BULK_PAGES_SUMMARY_PATH
WAIT = 10.0
#: Requests the old bisection (both halves of every refused piece) was allowed per chunk; three
#: refused targets among 1000 ran it out and failed the task (issue 12).
OLD_BISECTION_BUDGET = 40


class FakeApi:
    """The API's rules for refused targets: any refused target fails the whole task with 40501
    (free); otherwise every target gets an item and the task costs 0.02 + 0.00003 per item."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.requests = 0
        self.charged_usd = 0.0
        self.sent: list[list[str]] = []

    def post(self, targets: list[str]) -> TaskResult:
        self.requests += 1
        self.sent.append(list(targets))
        if self.refused & set(targets):
            raise DataForSeoInvalidRequestError(
                "Invalid Field: 'targets'.", status_code=api.INVALID_FIELD, endpoint=ENDPOINT
            )
        cost = round(0.02 + 0.00003 * len(targets), 5)
        self.charged_usd += cost
        items = [{"url": target, "rank": 1} for target in targets]
        return TaskResult(
            task_id=f"t{self.requests}",
            endpoint=ENDPOINT,
            cost_usd=cost,
            items=items,
            results=[{"items_count": len(items), "items": items}],
        )


def _pages(n: int) -> list[str]:
    return [f"https://example.com/p/{i}" for i in range(n)]


# ---------------------------------------------------------------------------------------------
# The group-testing search
# ---------------------------------------------------------------------------------------------


@st.composite
def refused_positions(draw: st.DrawFn) -> tuple[int, set[int]]:
    n = draw(st.integers(1, 1000))
    d = draw(st.integers(0, min(n, 12)))
    spread = draw(st.sampled_from(["random", "even", "cluster"]))
    if spread == "random":
        positions = set(draw(st.lists(st.integers(0, n - 1), min_size=d, max_size=d, unique=True)))
    elif spread == "even":
        positions = {i * n // max(d, 1) for i in range(d)}
    else:
        start = draw(st.integers(0, n - d))
        positions = set(range(start, start + d))
    return n, positions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=refused_positions())
def test_the_search_finds_every_refused_target_within_d_log2_n_over_d_plus_o_d_requests(
    case: tuple[int, set[int]],
) -> None:
    n, positions = case
    targets = [f"t{i}" for i in range(n)]
    refused = {targets[i] for i in positions}
    requests = 1  # the refused request itself
    passed: list[str] = []
    if refused:
        search = RefusalSearch(targets)
        while (group := search.next_group()) is not None:
            requests += 1
            bad = bool(refused & set(group))
            search.record(bad)
            if not bad:
                passed.extend(group)
        assert set(search.refused) == refused and len(search.refused) == len(refused)
        assert search.done and search.unresolved() == []
    else:
        passed = targets
    assert sorted(passed + sorted(refused)) == sorted(targets)  # each target settled exactly once
    d = len(refused)
    assert requests <= request_bound(n, d)
    if d:
        assert request_bound(n, d) == 1 + math.floor(d * math.log2(n / d) + 3.5 * d)


def test_the_bound_grows_with_the_refused_targets_not_the_chunk_size() -> None:
    assert request_bound(1000, 0) == 1
    assert request_bound(1000, 1) == 14  # 1 + log2(1000) + 3.5
    assert request_bound(1000, 3) == 36 < OLD_BISECTION_BUDGET + 1
    assert request_bound(1000, 3) < 2 * 3 * math.log2(1000)  # plain bisection sends both halves


def test_an_unfinished_search_names_what_it_has_not_settled() -> None:
    search = RefusalSearch(["a", "b", "c", "d"])
    assert search.next_group() == ["a", "b"]
    assert search.unresolved() == ["a", "b", "c", "d"]  # the group in flight is not settled yet
    search.record(False)
    assert search.unresolved() == ["c", "d"]
    with pytest.raises(RuntimeError, match="no group was sent"):
        search.record(True)
    assert search.next_group() == ["c"]
    with pytest.raises(RuntimeError, match="record"):
        search.next_group()
    search.record(True)
    assert search.refused == ["c"] and search.unresolved() == ["d"]
    with pytest.raises(ValueError, match="at least one target"):
        RefusalSearch([])
    assert RefusalSearch(["only"]).refused == ["only"]  # known refused: no request needed


# ---------------------------------------------------------------------------------------------
# Through fetch: the example, the allowance, the cap
# ---------------------------------------------------------------------------------------------


def test_three_refused_targets_in_one_1000_target_chunk_cost_far_less_than_the_old_bisection() -> None:
    """Issue 12: three 40501-refused targets spread through one 1000-target chunk."""
    targets = _pages(1000)
    refused = {targets[100], targets[500], targets[900]}
    fake = FakeApi(refused)
    target_set = normalise_targets(targets)
    rows: list[dict[str, Any]] = []
    cap = 0.5
    summary = fetch_bulk_pages_summary(
        target_set, [targets], fake.post, rows.extend, max_active_requests=1, max_cost_usd=cap
    )
    assert summary.rejected_targets == [targets[100], targets[500], targets[900]]
    assert summary.unresolved_targets == []
    assert sorted(row["target"] for row in rows) == sorted(set(targets) - refused)  # the other 997
    assert fake.requests <= request_bound(1000, 3) == 36  # the old bisection failed after 41
    assert fake.charged_usd == pytest.approx(summary.cost_usd) and summary.cost_usd <= cap
    assert summary.requests == len(fake.sent) - sum(1 for sent in fake.sent if refused & set(sent))


def test_when_the_isolation_allowance_runs_out_the_rest_is_reported_unresolved() -> None:
    targets = _pages(1000)
    refused = {targets[i] for i in (10, 300, 301, 650, 999)}
    fake = FakeApi(refused)
    outcome = fetch_chunk(0, targets, fake.post, normalise_targets(targets), max_isolation_requests=12)
    assert fake.requests == 13  # the chunk, then its allowance
    assert set(outcome.rejected_targets) <= refused
    assert outcome.unresolved_targets and not outcome.pending
    answered = [row["target"] for row in outcome.rows]
    settled = [*answered, *outcome.rejected_targets, *outcome.unresolved_targets]
    assert sorted(settled) == sorted(targets)  # every target exactly once
    assert refused <= set(outcome.rejected_targets) | set(outcome.unresolved_targets)
    assert request_bound(1000, 5) <= DEFAULT_MAX_ISOLATION_REQUESTS  # the default settles 5 in 1000


def test_isolation_is_paid_only_from_what_the_cap_leaves_beside_the_plan() -> None:
    # two chunks: the first has a refused target; the cap equals the plan's estimate plus one
    # isolating request, so the search stops early and the second chunk is still paid for
    first, second = _pages(1000), [f"https://example.org/q/{i}" for i in range(1000)]
    refused = {first[700]}
    fake = FakeApi(refused)
    plan = estimate_cost_usd(2, 2000)
    cap = plan + request_cost_bound_usd(500)
    rows: list[dict[str, Any]] = []
    summary = fetch_bulk_pages_summary(
        normalise_targets(first + second), [first, second], fake.post, rows.extend,
        max_active_requests=1, max_cost_usd=cap,
    )  # fmt: skip
    assert summary.cost_usd <= cap and fake.charged_usd == pytest.approx(summary.cost_usd)
    assert first[700] in summary.unresolved_targets
    assert set(second) <= {row["target"] for row in rows}  # the plan came first
    assert len(rows) + len(summary.unresolved_targets) + len(summary.rejected_targets) == 2000


def test_a_planned_request_draws_on_the_share_set_aside_and_others_only_on_the_rest() -> None:
    budget = CostBudget(0.10)
    budget.set_aside(0.08)
    with pytest.raises(CostLimitExceededError, match="an isolating request"):
        budget.reserve(0.03, "an isolating request")  # 0.08 kept for the plan + 0.03 > 0.10
    extra = budget.reserve(0.02, "a follow-up")
    planned = budget.reserve(0.05, "chunk 1", planned=True)
    assert budget.planned_usd == pytest.approx(0.03)
    budget.release(planned)  # refused: the chunk's share is not kept for the plan any more
    budget.settle(extra, 0.02)
    assert budget.planned_usd == pytest.approx(0.03) and budget.spent_usd == pytest.approx(0.02)
    budget.reserve(0.05, "isolating")  # 0.02 + 0.03 + 0.05 == 0.10


def test_targets_the_local_check_refuses_cost_no_isolation_request() -> None:
    good = _pages(50)
    chunk = [*good[:20], "not a target", *good[20:], "HTTPS://Example.COM/x"]
    fake = FakeApi({"not a target", "HTTPS://Example.COM/x"})
    outcome = fetch_chunk(0, chunk, fake.post, normalise_targets(good))
    assert outcome.rejected_targets == ["not a target", "HTTPS://Example.COM/x"]
    assert fake.requests == 2  # the refused chunk, then the rest at once
    assert {row["target"] for row in outcome.rows} == set(good)


_HOSTS = st.sampled_from(
    ["example.com", "a.b.example.co.uk", "xn--bcher-kva.de", "bücher.de", "x.blogspot.com"]
)
_TEXT = st.text(st.sampled_from(list("aZ09-._~:/?#[]@!$&'()*+,;=% ü€")), max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    value=st.one_of(
        st.builds(
            lambda s, h, p: f"{s}{h}{p}",
            st.sampled_from(["", "http://", "https://", "HTTPS://www."]),
            _HOSTS,
            _TEXT,
        ),
        _TEXT,
    )
)
def test_what_the_normaliser_sends_the_api_accepts(value: str) -> None:
    """The pre-check: a normalised target passes the emulator's copy of the endpoint's rules."""
    from airflow_provider_dataforseo.emulator.app import is_valid_target

    try:
        target = normalise_target(value)
    except ValueError:
        return
    assert is_valid_target(target), (value, target)


# ---------------------------------------------------------------------------------------------
# Shutdown: daemon workers, waits that wake on close
# ---------------------------------------------------------------------------------------------


def test_daemon_pool_runs_calls_and_its_threads_never_keep_the_process_alive() -> None:
    pool = DaemonPool(2, name="test")
    release = threading.Event()
    hung = pool.submit(release.wait, 60)
    done = pool.submit(lambda x: x * 2, 21)
    queued = [pool.submit(release.wait, 60) for _ in range(3)]
    assert done.result(WAIT) == 42
    workers = [t for t in threading.enumerate() if t.name.startswith("test_")]
    assert len(workers) == 2 and all(t.daemon for t in workers)
    pool.shutdown(cancel_futures=True)  # returns at once, the hung call still running
    assert not hung.done() and sum(f.cancelled() for f in queued) >= 2
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)
    failing = DaemonPool(1)
    assert isinstance(failing.submit(lambda: 1 / 0).exception(WAIT), ZeroDivisionError)
    failing.shutdown()
    release.set()
    with pytest.raises(ValueError, match="max_workers"):
        DaemonPool(0)


def test_a_closed_limiter_wakes_a_backoff_wait_at_once() -> None:
    limiter = RequestLimiter(max_in_flight=1, requests_per_minute=None)
    woke = threading.Event()
    closed: list[bool] = []

    def backoff() -> None:
        closed.append(limiter.pause(600))
        woke.set()

    thread = threading.Thread(target=backoff, daemon=True)
    thread.start()
    limiter.close()
    assert woke.wait(WAIT) and closed == [True]
    assert limiter.pause(0.01) is True  # closed: no wait at all


def test_a_closed_limiter_wakes_a_request_waiting_for_its_start_time() -> None:
    from airflow_provider_dataforseo.ratelimit import RequestsStoppedError

    limiter = RequestLimiter(max_in_flight=5, requests_per_minute=1, burst=1)
    limiter.acquire()
    limiter.release()
    outcome: list[str] = []

    def second() -> None:  # its start time is a minute away
        try:
            limiter.acquire()
            outcome.append("started")
        except RequestsStoppedError:
            outcome.append("stopped")

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    limiter.close()
    thread.join(WAIT)
    assert outcome == ["stopped"] and limiter.in_flight == 0


# ---------------------------------------------------------------------------------------------
# Deadline and credentials: the pure parts
# ---------------------------------------------------------------------------------------------


def test_the_deadline_cuts_connect_and_read_timeouts_to_the_time_left() -> None:
    now = [100.0]
    deadline = Deadline(5, clock=lambda: now[0])
    assert deadline.timeout((2, 3)) == (2, 3)
    now[0] = 103.5
    assert deadline.timeout((2, 3)) == (1.5, 1.5)
    assert deadline.timeout(10.0) == (1.5, 1.5)
    now[0] = 200
    assert deadline.left() == 0 and deadline.timeout((2, 3)) == (0.001, 0.001)
    for bad in (0, -1, float("inf"), "5", True, None):
        with pytest.raises(ValueError, match="request_deadline must be a positive number of seconds"):
            check_deadline(bad)
    from airflow_provider_dataforseo.deadline import DEFAULT_REQUEST_DEADLINE_SECONDS

    assert DEFAULT_REQUEST_DEADLINE_SECONDS > api.LIVE_TASK_TIMEOUT_SECONDS


def test_credentials_are_encoded_as_utf8_and_never_shown() -> None:
    from airflow_provider_dataforseo.hooks.dataforseo import BasicAuthUtf8

    password = "pässwörd€"
    auth = BasicAuthUtf8.of("login", password, conn_id="c")
    assert base64.b64decode(auth.token) == "login:pässwörd€".encode()
    assert password not in repr(auth) and auth.token not in repr(auth)
    with pytest.raises(DataForSeoAuthenticationError) as info:
        BasicAuthUtf8.of("login", "bad\udcffpart", conn_id="c")
    error = info.value
    assert not error.retryable and "cannot be encoded as UTF-8" in str(error)
    assert error.__cause__ is None and error.__context__ is None  # no chain that holds the password
    assert "bad" not in str(error)


@pytest.mark.parametrize("bad", [0, -5, "300", None, float("nan")])
def test_a_bad_request_deadline_is_refused_when_the_dag_is_parsed(bad: object) -> None:
    from airflow_provider_dataforseo.hooks.dataforseo import check_hook_params
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    with pytest.raises(ValueError, match=r"request_deadline must be a positive number of seconds, got"):
        check_hook_params({"request_deadline": bad})
    with pytest.raises(ValueError, match="request_deadline"):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], hook_params={"request_deadline": bad})
    assert BulkPagesSummaryOperator(task_id="y", targets=["a.com"], hook_params={"request_deadline": 5}).hook
