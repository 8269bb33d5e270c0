"""Property tests (hypothesis): random target lists and malformed replies never crash the pure modules.

Every call either succeeds with an answer that keeps its invariants, or raises the documented,
clear error (``InvalidTargetsError``, ``DataForSeoError``, ``CheckpointError``, ``FaultConfigError``,
``ValueError`` or ``TypeError`` with a message naming the value): never a bare ``KeyError``,
``TypeError``, ``IndexError`` or ``AttributeError`` from inside. Complements the parser properties of
``test_responses.py`` and the planner properties of ``test_targets.py``.
"""

from __future__ import annotations

import json
import math
import string
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo import targets as targets_module
from airflow_provider_dataforseo.checkpoint import CheckpointError, chunk_digest, outcome_from_record
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator import app as emulator_app
from airflow_provider_dataforseo.emulator.faults import FAULT_KINDS, FaultConfig, FaultConfigError
from airflow_provider_dataforseo.exceptions import (
    DataForSeoError,
    DataForSeoInvalidRequestError,
    DataForSeoServerError,
    InvalidTargetsError,
)
from airflow_provider_dataforseo.fetch import (
    ChunkInterrupted,
    ChunkOutcome,
    declared_items,
    fetch_chunk,
    with_request_context,
)
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.ratelimit import CostBudget, CostLimitExceededError, RequestLimiter
from airflow_provider_dataforseo.responses import TaskResult, parse_task_response
from airflow_provider_dataforseo.sources import TargetSourceError, coerce_targets, parse_target_file
from airflow_provider_dataforseo.targets import (
    count_main_domains,
    normalise_targets,
)
from airflow_provider_dataforseo.wording import counted
from tests.conftest import conn_json

ENDPOINT = api.BULK_PAGES_SUMMARY_PATH
SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)

# ---------------------------------------------------------------------------------------------
# Random target lists
# ---------------------------------------------------------------------------------------------

LABEL = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10)
TLD = st.sampled_from(["com", "org", "co.uk", "de", "blogspot.com", "xn--p1ai", "io", "com.au"])


@st.composite
def plausible_targets(draw: st.DrawFn) -> str:
    """Domains, subdomains and pages, in the shapes users type, with random case and decoration."""
    host = ".".join(draw(st.lists(LABEL, min_size=1, max_size=3))) + "." + draw(TLD)
    if draw(st.booleans()):
        host = "www." + host
    if draw(st.booleans()):
        host = host.upper() if draw(st.booleans()) else host.capitalize()
    if draw(st.booleans()):
        scheme = draw(st.sampled_from(["http", "https", "HTTPS", "ftp"]))
        path = draw(st.sampled_from(["", "/", "/a/B", "/x?q=1", "/p#frag", ":8080/z", "/ä"]))
        return f"{scheme}://{host}{path}"
    return host + draw(st.sampled_from(["", ".", "/", "/page"]))


RAW_TARGETS = st.lists(plausible_targets(), max_size=25) | st.lists(
    plausible_targets() | st.text(max_size=30) | st.integers() | st.none() | st.binary(max_size=5),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(values=RAW_TARGETS)
def test_normalise_targets_accepts_only_what_the_api_accepts_or_names_every_bad_entry(
    values: list[object],
) -> None:
    try:
        target_set = normalise_targets(values)
    except InvalidTargetsError as error:
        event("refused")
        assert error.errors, "an InvalidTargetsError names at least one entry"
        for position, value, reason in error.errors:
            assert isinstance(reason, str) and reason
            assert (values and values[position] is value) or (not values and position == 0)
        assert str(error).startswith(f"{len(error.errors)} invalid target(s), nothing was sent:")
        return
    event("accepted")
    # the emulator validates independently, as the API would: it must accept every target sent
    assert all(emulator_app.is_valid_target(target) for target in target_set.targets)
    assert len(set(target_set.targets)) == len(target_set.targets)
    assert sum(len(target_set.inputs_of(t)) for t in target_set.targets) == len(
        set(values)
    )  # identical inputs are listed once
    for chunk in plan_chunks(target_set.targets):
        assert 1 <= len(chunk) <= api.MAX_TARGETS_PER_REQUEST
        assert count_main_domains(chunk) <= api.MAX_MAIN_DOMAINS_PER_REQUEST
        assert emulator_app.validate_task({"targets": chunk}) is None


URL_TAIL = st.text(alphabet="/?#&=%.:@!$'()*+,;aZ9-_~\\\x01\u00e4", max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.text(alphabet=string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=20)
    | plausible_targets().map(lambda t: t.split("://")[-1].split("/")[0].lower()),
    tail=URL_TAIL,
)
def test_the_plain_page_fast_path_gives_what_urlsplit_gives(scheme: str, host: str, tail: str) -> None:
    # normalise_target takes a regex fast path for already-plain pages; the general path
    # (urlsplit/urlunsplit) must agree on the result or on the refusal, for every input
    text = f"{scheme}://{host}{tail}"

    def outcome(fn: Any) -> str:
        try:
            return f"ok {fn()}"
        except ValueError as exc:
            return f"refused {type(exc).__name__}"

    fast = outcome(lambda: targets_module.normalise_target(text))
    general = outcome(lambda: targets_module._normalise_page(text, scheme))
    event("fast path" if targets_module._PLAIN_PAGE_RE.fullmatch(text) else "general path")
    assert fast == general
    if fast.startswith("ok "):  # the host of a normalised page, by target_host's fast path too
        target = fast[3:]
        assert targets_module.target_host(target) == (urlsplit(target).hostname or "")


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(alphabet=string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=30)
    | st.sampled_from(["www.a.com", "www.www.a.co.uk", "www.com", "co.uk", "a.example", "www.blogspot.com"])
)
def test_the_plain_domain_fast_path_gives_what_the_general_path_gives(text: str) -> None:
    # normalise_target takes a domain of lowercase ASCII letters, digits, dots and hyphens
    # straight to the host rules; the general path (_normalise_domain) must agree on the result
    # or on the reason it refuses
    def outcome(fn: Any) -> str:
        try:
            return f"ok {fn()}"
        except ValueError as exc:
            return f"refused {exc}"

    assert targets_module._PLAIN_DOMAIN_RE.fullmatch(text)
    assert outcome(lambda: targets_module.normalise_target(text)) == outcome(
        lambda: targets_module._normalise_domain(text)
    )


PAGES_ON_FEW_HOSTS = st.builds(
    lambda scheme, host, tail: f"{scheme}://{host}{tail}",
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["a.com", "A.com", "www.b.co.uk", "x.y.example", "bad..com", "co.uk", "c.com:443"]),
    URL_TAIL,
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(PAGES_ON_FEW_HOSTS | plausible_targets(), min_size=1, max_size=12))
def test_normalise_distinct_gives_what_normalise_target_gives_one_by_one(values: list[str]) -> None:
    # normalise_distinct inlines normalise_target's first case (a plain page on a host met
    # before): the result, and every refusal with its position, must be the one-by-one result
    expected: dict[str, None] = {}
    refused = []
    for position, value in enumerate(values):
        try:
            expected.setdefault(targets_module.normalise_target(value), None)
        except ValueError as exc:
            refused.append((position, value, str(exc)))
    try:
        distinct, _, count = targets_module.normalise_distinct(values)
    except InvalidTargetsError as error:
        event("refused")
        assert error.errors == refused
        return
    event("accepted")
    assert not refused
    assert distinct == list(expected) and count == len(values)


@settings(max_examples=200, deadline=None)
@given(value=JSON | st.text(max_size=60) | st.sets(st.text(max_size=3), max_size=2))
@example(value="/")
def test_coerce_targets_gives_a_list_or_a_type_error_naming_the_type(value: object) -> None:
    try:
        entries = coerce_targets(value)
    except TypeError as error:
        assert "targets must be" in str(error)
        return
    except TargetSourceError as error:  # text whose target column is undecidable names the setting
        assert "targets_column" in str(error) or "looks like a path" in str(error)  # or a bare path
        return
    assert isinstance(entries, list)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200))
def test_parse_target_file_never_crashes(text: str) -> None:
    try:
        entries = parse_target_file(text)
    except TargetSourceError as error:  # a header-less table whose target column is undecidable
        assert "targets_column" in str(error) and "line " in str(error)
        return
    assert all(isinstance(entry, str) for entry in entries)


# ---------------------------------------------------------------------------------------------
# Fetching one chunk against a random, misbehaving API
# ---------------------------------------------------------------------------------------------

CHUNK_POOL = [f"site{i}.com" for i in range(12)] + [f"https://page{i}.org/p" for i in range(12)]


@st.composite
def api_behaviour(draw: st.DrawFn) -> dict[str, Any]:
    """A chunk, the targets the API refuses, and a script of how each reply misbehaves."""
    chunk = draw(st.lists(st.sampled_from(CHUNK_POOL), min_size=1, max_size=16, unique=True))
    bad = draw(st.lists(st.sampled_from(chunk), max_size=2, unique=True))
    replies = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "answer": st.lists(st.booleans(), min_size=16, max_size=16),  # which targets get items
                    "case": st.booleans(),  # echo urls in upper case
                    "junk": st.lists(JSON, max_size=2),  # extra entries in items
                    "stranger": st.booleans(),  # an item for a target not asked
                    "duplicate": st.booleans(),  # the first item twice
                    "declared": st.integers(-2, 3),  # items_count minus what is sent
                    "payload": st.none() | JSON,  # sometimes a body that is not an envelope at all
                    "raw": st.integers(0, 9),  # ...used when raw == 0
                }
            ),
            min_size=1,
            max_size=6,
        )
    )
    return {"chunk": chunk, "bad": bad, "replies": replies}


def _scripted_post(behaviour: dict[str, Any]) -> Any:
    """A ``post`` that plays ``behaviour``: 40501 for refused targets, otherwise a doctored reply."""
    calls = {"n": 0}

    def post(piece: list[str]) -> TaskResult:
        script = behaviour["replies"][calls["n"] % len(behaviour["replies"])]
        calls["n"] += 1
        if set(piece) & set(behaviour["bad"]):
            raise DataForSeoInvalidRequestError(
                "Invalid Field: 'targets'.", status_code=api.INVALID_FIELD, endpoint=ENDPOINT
            )
        if script["raw"] == 0:
            return parse_task_response(script["payload"], endpoint=ENDPOINT)
        items: list[Any] = [
            {"url": (t.upper() if script["case"] and "://" not in t else t), "rank": i}
            for i, t in enumerate(piece)
            if script["answer"][i % 16]
        ]
        if script["stranger"]:
            items.append({"url": "https://elsewhere.net/", "rank": 1})
        if script["duplicate"] and items:
            items.append(dict(items[0]))
        items.extend(script["junk"])
        declared = max(0, len(items) + script["declared"])
        payload = {
            "status_code": 20000,
            "tasks": [
                {
                    "id": f"task-{calls['n']}",
                    "status_code": 20000,
                    "cost": 0.02 + 0.00003 * len(items),
                    "result": [{"items_count": declared, "items": items}],
                }
            ],
        }
        return parse_task_response(payload, endpoint=ENDPOINT)

    return post


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour=api_behaviour(), bisection_budget=st.sampled_from([0, 2, 40]))
def test_fetch_chunk_accounts_for_every_target_exactly_once(
    behaviour: dict[str, Any], bisection_budget: int
) -> None:
    chunk = behaviour["chunk"]
    target_set = normalise_targets(chunk)
    try:
        outcome = fetch_chunk(
            0,
            chunk,
            _scripted_post(behaviour),
            target_set,
            budget=CostBudget(None),
            max_isolation_requests=bisection_budget,
        )
    except ChunkInterrupted as interrupted:
        outcome = interrupted.outcome
        assert isinstance(interrupted.cause, DataForSeoError)
        assert outcome.pending
    except DataForSeoError as error:
        event(f"failed {error.status_code}")
        assert "(request of " in str(error)  # names the request's targets
        return
    event(f"pending={bool(outcome.pending)} rejected={len(outcome.rejected_targets)}")
    answered = [row["target"] for row in outcome.rows if row["target"] is not None]
    assert len(answered) == len(set(answered))  # no target twice
    parts = [
        set(answered),
        set(outcome.missing_targets),
        set(outcome.rejected_targets),
        set(outcome.unresolved_targets),
        set(outcome.pending),
    ]
    assert sum(len(part) for part in parts) == len(set().union(*parts))  # disjoint
    assert set().union(*parts) == set(chunk)  # and nothing forgotten
    assert set(outcome.rejected_targets) <= set(behaviour["bad"])
    assert outcome.items == len(outcome.rows)
    assert outcome.unmatched_items == sum(1 for row in outcome.rows if row["target"] is None)
    assert all(isinstance(row["item"], dict) for row in outcome.rows)
    if not outcome.pending and not outcome.unresolved_targets:
        assert set(outcome.rejected_targets) == set(behaviour["bad"])


@settings(max_examples=200, deadline=None)
@given(results=st.lists(st.dictionaries(st.sampled_from(["items_count", "items", "x"]), JSON), max_size=3))
def test_declared_items_is_a_count_or_zero(results: list[dict[str, Any]]) -> None:
    declared = declared_items(
        TaskResult(task_id=None, endpoint=ENDPOINT, cost_usd=0.0, items=[], results=results)
    )
    assert isinstance(declared, int) and declared >= 0


@settings(max_examples=100, deadline=None)
@given(
    message=st.text(max_size=40),
    code=st.none() | st.integers(0, 60000),
    targets=st.lists(st.text(max_size=12), max_size=9),
)
def test_errors_name_the_request_and_keep_their_kind(
    message: str, code: int | None, targets: list[str]
) -> None:
    original = DataForSeoServerError(message, status_code=code, task_id="t", endpoint=ENDPOINT)
    named = with_request_context(original, targets)
    assert type(named) is DataForSeoServerError
    assert named.status_code == code and named.task_id == "t"  # type: ignore[attr-defined]
    assert f"(request of {counted(len(targets), 'target')}: " in str(named)  # "1 target", "2 targets"


# ---------------------------------------------------------------------------------------------
# Checkpoint records, fault configurations, money and rate limits
# ---------------------------------------------------------------------------------------------

CHUNK = ["a.com", "https://b.com/", "c.org"]
DIGEST = chunk_digest(CHUNK, {"tag": None})
GOOD_RECORD = {
    "version": 1,
    "digest": DIGEST,
    "targets": 3,
    "items": 2,
    "requests": 1,
    "cost_usd": 0.02006,
    "missing_targets": ["c.org"],
    "rejected_targets": [],
    "unmatched_items": 0,
    "task_ids": ["t"],
    "pending": [],
    "bytes": 10,
}


@st.composite
def damaged_records(draw: st.DrawFn) -> object:
    if draw(st.booleans()):
        return draw(JSON)
    record = dict(GOOD_RECORD)
    for key in draw(st.lists(st.sampled_from(sorted(GOOD_RECORD)), max_size=3)):
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(JSON | st.lists(st.sampled_from([*CHUNK, "other.net"]), max_size=3))
    return record


@settings(max_examples=300, deadline=None)
@given(record=damaged_records())
def test_checkpoint_records_are_read_back_or_refused_with_a_reason(record: object) -> None:
    try:
        outcome = outcome_from_record(record, index=4, chunk=CHUNK, digest=DIGEST)
    except CheckpointError as error:
        assert str(error)
        return
    assert isinstance(outcome, ChunkOutcome) and outcome.resumed and outcome.index == 4
    assert set(outcome.missing_targets) | set(outcome.rejected_targets) | set(outcome.pending) <= set(CHUNK)
    assert math.isfinite(outcome.cost_usd) and outcome.cost_usd >= 0


@settings(max_examples=300, deadline=None)
@given(
    obj=JSON
    | st.fixed_dictionaries(
        {},
        optional={
            "rates": st.dictionaries(st.sampled_from([*FAULT_KINDS, "meteor"]), JSON, max_size=4),
            "seed": JSON,
            "hang_seconds": JSON,
            "slow_seconds": JSON,
            "drop_share": JSON,
            "reject_share": JSON,
            "reject_targets": JSON,
        },
    )
)
def test_fault_configurations_are_built_or_refused_by_name(obj: object) -> None:
    try:
        config = FaultConfig.from_json(obj)
    except FaultConfigError as error:
        assert str(error)
        return
    assert FaultConfig.from_json(config.to_json()) == config
    assert sum(config.rates.values()) <= 1 + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    limit=st.none() | st.floats(min_value=0.02, max_value=2.0),
    steps=st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 1), st.booleans()), max_size=40),
)
def test_the_cost_budget_never_lets_the_spend_pass_the_limit(
    limit: float | None, steps: list[tuple[int, float, bool]]
) -> None:
    budget = CostBudget(limit)
    open_reservations = []
    for n_targets, share, charged in steps:
        bound = 0.02 + n_targets * 0.00003
        try:
            reservation = budget.reserve(bound, f"a request of {n_targets} targets")
        except CostLimitExceededError as error:
            assert limit is not None and "over max_cost_usd" in str(error)
            continue
        open_reservations.append((reservation, bound * share, charged))
        if len(open_reservations) > 3:  # settle the oldest: charged at most its bound, or nothing
            done, actual, was_charged = open_reservations.pop(0)
            budget.settle(done, actual) if was_charged else budget.release(done)
        if limit is not None:
            assert budget.spent_usd + budget.reserved_usd <= limit + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    max_in_flight=st.integers(-2, 40) | st.none() | st.text(max_size=2),
    per_minute=st.none() | st.integers(-2, 3000) | st.booleans(),
)
def test_limiter_settings_are_used_or_refused_by_name(max_in_flight: Any, per_minute: Any) -> None:
    try:
        limiter = RequestLimiter(max_in_flight=max_in_flight, requests_per_minute=per_minute)
    except ValueError as error:
        assert "must be an integer of at least 1" in str(error)
        return
    assert 1 <= limiter.burst <= (per_minute or limiter.burst)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=80) | JSON.map(lambda v: json.dumps(v).encode()))
def test_the_emulator_reads_any_body_without_crashing(raw: bytes) -> None:
    tasks, code, message = emulator_app.parse_body(raw)
    if tasks is None:
        assert code in (api.EMPTY_POST_DATA, api.INVALID_POST_DATA) and message
        return
    for task in tasks:
        problem = emulator_app.validate_task(task)
        assert problem is None or problem.startswith("Invalid Field: '")


# ---------------------------------------------------------------------------------------------
# Over the wire: random bodies and statuses reach the hook as a clear DataForSeoError
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wire(emulator: Any) -> Any:
    return emulator


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.text(max_size=60) | JSON.map(json.dumps),
    http_status=st.sampled_from([200, 200, 201, 400, 401, 402, 404, 429, 500, 502, 503]),
)
def test_the_hook_turns_any_malformed_reply_into_a_data_for_seo_error(
    wire: Any, monkeypatch: pytest.MonkeyPatch, body: str, http_status: int
) -> None:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    # a well-formed success is not a malformed reply
    assume(not (isinstance(payload, dict) and payload.get("status_code") == api.OK))
    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_WIRE", conn_json(wire.url))
    hook = DataForSeoHook("dataforseo_wire", max_attempts=1)
    fault = {"body": body, "http_status": http_status}
    requests.post(f"{wire.url}/_emulator/faults", json={"faults": [fault]}, timeout=5).raise_for_status()
    try:
        with pytest.raises(DataForSeoError) as info:
            hook.bulk_pages_summary(["example.com"])
    finally:
        requests.delete(f"{wire.url}/_emulator/faults", timeout=5)
        hook.close()
    assert str(info.value).startswith("DataForSEO")


_ITEM_OBJECT = st.dictionaries(st.sampled_from(["url", "rank", "x"]), JSON, max_size=3)
ITEM = st.one_of(_ITEM_OBJECT, _ITEM_OBJECT, _ITEM_OBJECT, _ITEM_OBJECT, JSON)
ENVELOPES = st.fixed_dictionaries(
    {
        "status_code": st.sampled_from([20000] * 5 + [40501, None, "20000"]),
        "tasks": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.none() | st.text(max_size=4),
                    "status_code": st.sampled_from([20000] * 5 + [40204, None]),
                    "cost": JSON,
                    "result": st.lists(
                        st.fixed_dictionaries(
                            {"items_count": JSON, "items": st.lists(ITEM, min_size=1, max_size=4) | JSON}
                        )
                        | JSON,
                        max_size=2,
                    )
                    | JSON,
                }
            )
            | JSON,
            max_size=2,
        )
        | JSON,
    }
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelope=ENVELOPES)
def test_raw_items_read_any_reply_as_the_full_decode_does(envelope: dict[str, Any]) -> None:
    # the fast path (items kept as JSON text) must give what the full decode gives: the same
    # error, or the same items (decoded back), urls, malformed count, cost and task id
    import msgspec

    from airflow_provider_dataforseo.responses import decode_reply

    body = msgspec.json.encode(envelope)  # NaN and infinities as null: valid JSON

    def read(raw: bool) -> Any:
        try:
            result = parse_task_response(decode_reply(body, raw_items=raw), endpoint=ENDPOINT)
        except DataForSeoError as error:
            return ("error", type(error).__name__, error.status_code, str(error))
        items = (
            [msgspec.json.decode(item) for item in result.raw_items]
            if result.raw_items is not None
            else result.items
        )
        urls = result.item_urls if result.raw_items is not None else [item.get("url") for item in items]
        event("raw items" if result.raw_items is not None else "dict items")
        return (
            "ok",
            items,
            urls,
            result.malformed_items,
            result.item_count,
            result.cost_usd,
            result.task_id,
            declared_items(result),
        )

    assert read(True) == read(False)
