"""responses.py: both status levels, error kinds, items kept as sent, items matched back by url."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import (
    DataForSeoAuthenticationError,
    DataForSeoError,
    DataForSeoInvalidRequestError,
    DataForSeoPaymentError,
    DataForSeoRateLimitError,
    DataForSeoServerError,
)
from airflow_provider_dataforseo.responses import (
    MatchedItems,
    TaskResult,
    match_items,
    match_keys,
    parse_task_response,
)

ENDPOINT = api.BULK_PAGES_SUMMARY_PATH
TASK_ID = "11281115-0696-0216-0000-c7b0b4b8bab9"


def make_item(url: object, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "backlinks_page_summary", "url": url}
    item.update(fields)
    return item


FULL_ITEM = make_item(
    "https://example.com/",
    rank=612,
    main_domain_rank=700,
    backlinks=1520,
    first_seen="2019-11-15 12:57:46 +00:00",
    lost_date=None,
    backlinks_spam_score=3,
    broken_backlinks=7,
    broken_pages=0,
    referring_domains=40,
    referring_domains_nofollow=2,
    referring_main_domains=35,
    referring_main_domains_nofollow=1,
    referring_ips=30,
    referring_subnets=28,
    referring_pages=900,
    referring_pages_nofollow=20,
    referring_links_tld={"com": 1000, "": 3, "blogspot.com": 12},
    referring_links_types={"anchor": 1500, "image": 20},
    referring_links_attributes={"nofollow": 30},
    referring_links_platform_types={"cms": 200, "blogs": 40},
    referring_links_semantic_locations={"": 700, "article": 600, "footer": 20},
    referring_links_countries={"": 40, "WW": 5, "US": 800, "DE": 50},
)


def make_task(
    items: list[Any] | None = None,
    *,
    status_code: object = 20000,
    status_message: object = "Ok.",
    cost: object = 0.02006,
    task_id: object = TASK_ID,
    result: object = "default",
    data: object = "default",
) -> dict[str, Any]:
    if result == "default":
        result = [{"total_count": len(items or []), "items_count": len(items or []), "items": items or []}]
    if data == "default":
        data = {"api": "backlinks", "function": "bulk_pages_summary", "targets": ["example.com"]}
    return {
        "id": task_id,
        "status_code": status_code,
        "status_message": status_message,
        "time": "0.1566 sec.",
        "cost": cost,
        "result_count": 1,
        "path": ["v3", "backlinks", "bulk_pages_summary", "live"],
        "data": data,
        "result": result,
    }


def make_envelope(
    tasks: object = "default",
    *,
    status_code: object = 20000,
    status_message: object = "Ok.",
    cost: object = 0.02006,
) -> dict[str, Any]:
    if tasks == "default":
        tasks = [make_task([FULL_ITEM])]
    return {
        "version": "0.1.20240801",
        "status_code": status_code,
        "status_message": status_message,
        "time": "0.2017 sec.",
        "cost": cost,
        "tasks_count": 1,
        "tasks_error": 0,
        "tasks": tasks,
    }


# ---------------------------------------------------------------------------------------------
# parse_task_response: success
# ---------------------------------------------------------------------------------------------


def test_success() -> None:
    second = make_item("https://example.com/about", rank=10)
    payload = make_envelope([make_task([FULL_ITEM, second], cost=0.02006)])
    result = parse_task_response(payload, endpoint=ENDPOINT)
    assert isinstance(result, TaskResult)
    assert result.task_id == TASK_ID
    assert result.endpoint == ENDPOINT
    assert result.cost_usd == 0.02006
    assert result.items == [FULL_ITEM, second]
    assert result.items[0] is payload["tasks"][0]["result"][0]["items"][0]  # untouched
    assert result.malformed_items == 0
    assert result.data == {"api": "backlinks", "function": "bulk_pages_summary", "targets": ["example.com"]}
    assert result.results == payload["tasks"][0]["result"]


def test_item_fields_missing_or_null_are_kept_as_sent() -> None:
    nulls = dict.fromkeys(FULL_ITEM)
    bare = {"url": "https://example.com/x"}
    empty: dict[str, Any] = {}
    payload = make_envelope([make_task([nulls, bare, empty])])
    result = parse_task_response(payload, endpoint=ENDPOINT)
    assert result.items == [nulls, bare, empty]
    assert result.malformed_items == 0


def test_null_maps_empty_keys_and_dotted_keys_pass_through() -> None:
    item = make_item(
        "https://example.com/",
        referring_links_tld=None,
        referring_links_types=None,
        referring_links_attributes={"": 4},
        referring_links_platform_types={},
        referring_links_semantic_locations=None,
        referring_links_countries={"": 1, "WW": 2, "blogspot.com": 3},
    )
    expected = copy.deepcopy(item)
    result = parse_task_response(make_envelope([make_task([item])]), endpoint=ENDPOINT)
    assert result.items == [expected]
    assert result.items[0]["referring_links_countries"][""] == 1
    assert result.items[0]["referring_links_tld"] is None


def test_items_of_every_result_entry_in_reply_order() -> None:
    a, b, c = make_item("https://a.com/"), make_item("https://b.com/"), make_item("https://c.com/")
    result_list = [{"items": [a]}, None, "junk", {"items": None}, {"items": [b, c]}, {}]
    result = parse_task_response(make_envelope([make_task(result=result_list)]), endpoint=ENDPOINT)
    assert result.items == [a, b, c]
    assert result.results == [{"items": [a]}, {"items": None}, {"items": [b, c]}, {}]


@pytest.mark.parametrize("result_value", [None, [], "oops", 3, {"items": []}])
def test_result_null_or_unusable_means_zero_items(result_value: object) -> None:
    result = parse_task_response(make_envelope([make_task(result=result_value)]), endpoint=ENDPOINT)
    assert result.items == []
    assert result.malformed_items == 0
    assert result.results == []
    assert result.task_id == TASK_ID


def test_non_object_items_are_dropped_and_counted() -> None:
    good, other = make_item("https://a.com/"), make_item("https://b.com/")
    task = make_task([None, good, "x", 5, ["https://a.com/"], 1.5, True, other])
    result = parse_task_response(make_envelope([task]), endpoint=ENDPOINT)
    assert result.items == [good, other]
    assert result.malformed_items == 6


@pytest.mark.parametrize(
    ("task_cost", "envelope_cost", "expected"),
    [
        (0.02009, 0.5, 0.02009),
        (0, 0.5, 0.0),
        (None, 0.02003, 0.02003),
        ("0.02", 0.02003, 0.02003),
        (True, 0.02003, 0.02003),
        (math.nan, 0.02003, 0.02003),
        (None, None, 0.0),
        (math.inf, "x", 0.0),
    ],
)
def test_cost(task_cost: object, envelope_cost: object, expected: float) -> None:
    payload = make_envelope([make_task([], cost=task_cost)], cost=envelope_cost)
    assert parse_task_response(payload, endpoint=ENDPOINT).cost_usd == expected


@pytest.mark.parametrize(("task_id", "expected"), [(TASK_ID, TASK_ID), (None, None), (42, None)])
def test_task_id(task_id: object, expected: str | None) -> None:
    payload = make_envelope([make_task([], task_id=task_id)])
    assert parse_task_response(payload, endpoint=ENDPOINT).task_id == expected


@pytest.mark.parametrize("data", [None, "x", [1]])
def test_data_that_is_not_an_object_becomes_empty(data: object) -> None:
    payload = make_envelope([make_task([], data=data)])
    assert parse_task_response(payload, endpoint=ENDPOINT).data == {}


# ---------------------------------------------------------------------------------------------
# parse_task_response: failures at both levels
# ---------------------------------------------------------------------------------------------


def test_failed_task_inside_an_ok_envelope() -> None:
    task = make_task(None, status_code=40501, status_message="Invalid Field: 'targets'.", cost=0, result=None)
    with pytest.raises(DataForSeoInvalidRequestError) as info:
        parse_task_response(make_envelope([task]), endpoint=ENDPOINT)
    error = info.value
    assert error.status_code == 40501
    assert error.status_message == "Invalid Field: 'targets'."
    assert error.task_id == TASK_ID
    assert error.endpoint == ENDPOINT
    assert not error.retryable


@pytest.mark.parametrize("tasks", [None, [], "x", {"0": {}}])
def test_envelope_without_tasks_is_a_retryable_server_error(tasks: object) -> None:
    with pytest.raises(DataForSeoServerError) as info:
        parse_task_response(make_envelope(tasks), endpoint=ENDPOINT)
    assert info.value.retryable
    assert info.value.status_code == 20000
    assert info.value.endpoint == ENDPOINT


@pytest.mark.parametrize("task", [None, "x", 3, ["a"]])
def test_task_that_is_not_an_object_is_a_retryable_server_error(task: object) -> None:
    with pytest.raises(DataForSeoServerError, match="task is not a JSON object") as info:
        parse_task_response(make_envelope([task]), endpoint=ENDPOINT)
    assert info.value.retryable


# (where the code sits, code, http status, kind)
FAILURES: list[tuple[str, int, int, type[DataForSeoError]]] = [
    ("envelope", 40100, 401, DataForSeoAuthenticationError),
    ("envelope", 40100, 200, DataForSeoAuthenticationError),
    ("envelope", 40104, 200, DataForSeoAuthenticationError),
    ("envelope", 40200, 402, DataForSeoPaymentError),
    ("envelope", 40210, 200, DataForSeoPaymentError),
    ("task", 40204, 200, DataForSeoPaymentError),
    ("task", 40203, 200, DataForSeoPaymentError),
    ("envelope", 40202, 200, DataForSeoRateLimitError),
    ("task", 40202, 200, DataForSeoRateLimitError),
    ("envelope", 40209, 200, DataForSeoRateLimitError),
    ("task", 40209, 200, DataForSeoRateLimitError),
    ("envelope", 40000, 200, DataForSeoInvalidRequestError),
    ("envelope", 40400, 404, DataForSeoInvalidRequestError),
    ("task", 40501, 200, DataForSeoInvalidRequestError),
    ("envelope", 50000, 500, DataForSeoServerError),
    ("task", 50000, 200, DataForSeoServerError),
    ("envelope", 50301, 200, DataForSeoServerError),
    ("task", 50301, 200, DataForSeoServerError),
    ("task", 50401, 200, DataForSeoServerError),
    ("envelope", 50401, 200, DataForSeoServerError),
]


@pytest.mark.parametrize(("level", "code", "http_status", "kind"), FAILURES)
def test_status_codes_at_both_levels(
    level: str, code: int, http_status: int, kind: type[DataForSeoError]
) -> None:
    if level == "envelope":
        payload = make_envelope(None, status_code=code, status_message=f"message {code}", cost=0)
        task_id = None
    else:
        task = make_task(None, status_code=code, status_message=f"message {code}", cost=0, result=None)
        payload = make_envelope([task])
        task_id = TASK_ID
    with pytest.raises(kind) as info:
        parse_task_response(payload, endpoint=ENDPOINT, http_status=http_status)
    error = info.value
    assert type(error) is kind
    assert (error.status_code, error.status_message, error.task_id, error.endpoint) == (
        code,
        f"message {code}",
        task_id,
        ENDPOINT,
    )
    assert error.retryable is (kind in (DataForSeoRateLimitError, DataForSeoServerError))


def test_access_denied_40204_is_a_payment_error_not_retried() -> None:
    task = make_task(None, status_code=40204, status_message="Access denied.", cost=0, result=None)
    with pytest.raises(DataForSeoPaymentError) as info:
        parse_task_response(make_envelope([task]), endpoint=ENDPOINT)
    assert not info.value.retryable
    assert info.value.task_id == TASK_ID


@pytest.mark.parametrize("body", [[], [make_envelope()], "Internal Server Error", "", 0, None, 1.5, True])
def test_body_that_is_not_an_envelope_is_a_retryable_server_error(body: object) -> None:
    # regression: with HTTP 200 this used to become a non-retryable DataForSeoInvalidRequestError(200)
    with pytest.raises(DataForSeoServerError) as info:
        parse_task_response(body, endpoint=ENDPOINT)
    assert info.value.retryable
    assert info.value.status_code is None
    assert info.value.endpoint == ENDPOINT


@pytest.mark.parametrize(
    ("http_status", "kind", "status_code"),
    [
        (200, DataForSeoServerError, None),
        (201, DataForSeoServerError, None),
        (500, DataForSeoServerError, 500),
        (502, DataForSeoServerError, 502),
        (401, DataForSeoAuthenticationError, 401),
        (402, DataForSeoPaymentError, 402),
        (404, DataForSeoInvalidRequestError, 404),
    ],
)
@pytest.mark.parametrize("body", [["not", "an", "object"], {"error": "no status here"}])
def test_reply_without_status_falls_back_to_http_status(
    body: object, http_status: int, kind: type[DataForSeoError], status_code: int | None
) -> None:
    with pytest.raises(kind) as info:
        parse_task_response(body, endpoint=ENDPOINT, http_status=http_status)
    assert type(info.value) is kind
    assert info.value.status_code == status_code


@pytest.mark.parametrize("code", ["20000", True, 20000.0, None])
def test_envelope_status_code_of_the_wrong_type_is_a_server_error(code: object) -> None:
    with pytest.raises(DataForSeoServerError):
        parse_task_response(make_envelope(status_code=code), endpoint=ENDPOINT)


@pytest.mark.parametrize("code", ["20000", True, None])
def test_task_status_code_of_the_wrong_type_is_a_server_error(code: object) -> None:
    with pytest.raises(DataForSeoServerError) as info:
        parse_task_response(make_envelope([make_task([], status_code=code)]), endpoint=ENDPOINT)
    assert info.value.task_id == TASK_ID


def test_missing_status_message_still_raises_with_a_message() -> None:
    task = make_task(None, status_code=40501, status_message=None, result=None)
    with pytest.raises(DataForSeoInvalidRequestError) as info:
        parse_task_response(make_envelope([task]), endpoint=ENDPOINT)
    assert info.value.status_message == "no status_message"


# ---------------------------------------------------------------------------------------------
# match_items
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "url"),
    [
        ("https://example.com/", "https://example.com/"),
        ("https://example.com/", "HTTPS://EXAMPLE.COM/"),
        ("https://example.com/Path?Q=1", "https://Example.com/Path?Q=1"),
        ("https://example.com/", "https://example.com"),
        ("https://example.com/a/", "https://example.com/a"),
        ("https://example.com/a", "https://example.com/a/"),
        ("https://example.com/a?x=1", "https://example.com/a/?x=1"),
        ("https://example.com/a", "https://example.com:443/a#frag"),
        ("https://xn--bcher-kva.de/", "https://bücher.de/"),
        ("https://xn--bcher-kva.de/stra%C3%9Fe", "https://BÜCHER.de/straße"),
        ("xn--bcher-kva.de", "bücher.de"),
        ("x.com", "https://www.x.com/"),
        ("x.com", "https://x.com/"),
        ("x.com", "http://x.com"),
        ("x.com", "www.x.com"),
        ("x.com", "X.COM"),
        ("docs.x.co.uk", "https://www.docs.x.co.uk/"),
    ],
)
def test_match_items_accepts_url_echo_variants(target: str, url: str) -> None:
    item = make_item(url)
    matched = match_items([item], ["other.com", target])
    assert matched.by_target == {target: item}
    assert matched.unmatched == []
    assert matched.missing == ["other.com"]


def test_fewer_items_than_targets_in_another_order() -> None:
    targets = ["https://a.com/", "b.com", "https://c.com/x", "d.co.uk", "https://e.github.io/"]
    c_item, a_item, e_item = (
        make_item("https://c.com/x"),
        make_item("https://a.com/"),
        make_item("https://e.github.io/"),
    )
    matched = match_items([c_item, a_item, e_item], targets)
    assert isinstance(matched, MatchedItems)
    assert matched.by_target == {
        "https://c.com/x": c_item,
        "https://a.com/": a_item,
        "https://e.github.io/": e_item,
    }
    assert list(matched.by_target) == ["https://c.com/x", "https://a.com/", "https://e.github.io/"]
    assert matched.missing == ["b.com", "d.co.uk"]
    assert matched.unmatched == []


def test_items_are_never_matched_by_position() -> None:
    targets = ["https://a.com/", "https://b.com/"]
    items = [make_item("https://b.com/"), make_item("https://a.com/")]
    matched = match_items(items, targets)
    assert matched.by_target == {"https://b.com/": items[0], "https://a.com/": items[1]}


def test_unmatched_items_are_kept() -> None:
    stray = [
        make_item("https://elsewhere.com/"),
        make_item(None),
        {"type": "backlinks_page_summary"},
        make_item(42),
        make_item("not a url at all"),
        make_item("ftp://a.com/"),
    ]
    good = make_item("https://a.com/")
    matched = match_items([stray[0], good, *stray[1:]], ["https://a.com/", "b.com"])
    assert matched.by_target == {"https://a.com/": good}
    assert matched.unmatched == stray
    assert matched.missing == ["b.com"]


def test_exact_page_target_wins_over_the_domain_target() -> None:
    targets = ["x.com", "https://www.x.com/"]
    page, domain = make_item("https://www.x.com/"), make_item("x.com")
    matched = match_items([page, domain], targets)
    assert matched.by_target == {"https://www.x.com/": page, "x.com": domain}
    assert matched.missing == []


def test_first_item_wins_and_a_duplicate_is_unmatched() -> None:
    first, duplicate = make_item("https://a.com/p"), make_item("https://A.com/p")
    matched = match_items([first, duplicate], ["https://a.com/p"])
    assert matched.by_target == {"https://a.com/p": first}
    assert matched.unmatched == [duplicate]


def test_missing_targets_in_chunk_order() -> None:
    targets = ["z.com", "https://a.com/", "m.com", "https://b.com/"]
    matched = match_items([make_item("https://b.com/")], targets)
    assert matched.missing == ["z.com", "https://a.com/", "m.com"]
    assert match_items([], targets).missing == targets


@pytest.mark.parametrize(
    ("url", "keys"),
    [
        ("https://www.x.com/", ["https://www.x.com/", "x.com"]),
        ("x.com", ["x.com", "https://x.com/", "http://x.com/"]),
        ("https://x.com/a", ["https://x.com/a", "https://x.com/a/"]),
        ("https://x.com/?q=1", ["https://x.com/?q=1"]),
        (None, []),
        ("", []),
        ("co.uk", []),
    ],
)
def test_match_keys(url: object, keys: list[str]) -> None:
    assert match_keys(url) == keys


# ---------------------------------------------------------------------------------------------
# Fuzzing: never a KeyError/TypeError/IndexError/AttributeError
# ---------------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([20000, 40501, 40204, 40202, 50000, "https://x.com/", "x.com", "bücher.de"])
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
CODES = st.sampled_from([20000] * 8 + [40100, 40204, 40209, 40501, 50000, 50401, None, "20000", True])


def mostly(shaped: st.SearchStrategy[Any], junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``shaped`` three times in four, else ``junk``."""
    return st.one_of(shaped, shaped, shaped, junk)


@st.composite
def near_valid_payloads(draw: st.DrawFn) -> object:
    """Envelopes shaped like the real thing (mostly 20000) with random holes, wrong types and junk."""
    item = mostly(
        st.dictionaries(
            st.sampled_from(["url", "rank", "referring_links_tld", "", "lost_date"]),
            JSON_SCALARS | st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=3),
            max_size=4,
        ),
        JSON,
    )
    result = mostly(
        st.fixed_dictionaries(
            {"items": mostly(st.lists(item, min_size=1, max_size=5), JSON)}, optional={"total_count": JSON}
        ),
        JSON,
    )
    task = mostly(
        st.fixed_dictionaries(
            {
                "status_code": mostly(st.just(20000), CODES),
                "result": mostly(st.lists(result, min_size=1, max_size=3), JSON),
            },
            optional={"id": JSON_SCALARS, "status_message": JSON_SCALARS, "cost": JSON_SCALARS, "data": JSON},
        ),
        JSON,
    )
    envelope = st.fixed_dictionaries(
        {
            "status_code": mostly(st.just(20000), CODES),
            "tasks": mostly(st.lists(task, min_size=1, max_size=2), JSON),
        },
        optional={"status_message": JSON_SCALARS, "cost": JSON_SCALARS},
    )
    return draw(mostly(envelope, JSON))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=near_valid_payloads(), http_status=st.sampled_from([200, 200, 200, 201, 401, 404, 500]))
def test_parse_task_response_never_crashes(payload: object, http_status: int) -> None:
    try:
        result = parse_task_response(payload, endpoint=ENDPOINT, http_status=http_status)
    except DataForSeoError as error:
        assert isinstance(error.status_message, str)
        str(error)
        return
    assert isinstance(result, TaskResult)
    assert all(isinstance(item, dict) for item in result.items)
    assert isinstance(result.cost_usd, float)
    assert math.isfinite(result.cost_usd)
    matched = match_items(result.items, ["x.com", "https://x.com/", "xn--bcher-kva.de"])
    assert len(matched.by_target) + len(matched.unmatched) == len(result.items)


@settings(max_examples=300, deadline=None)
@given(
    url=st.one_of(
        JSON_SCALARS, st.text(max_size=40), st.from_regex(r"\A[hH][tT]{2}[pP][sS]?://[^/]{0,20}/?.{0,10}\Z")
    )
)
def test_match_keys_never_crashes(url: object) -> None:
    keys = match_keys(url)
    assert isinstance(keys, list)
    assert all(isinstance(key, str) for key in keys)


def test_raw_items_keep_every_object_item_of_every_result_entry() -> None:
    # a regression found by the property test: one entry all objects, the next with a non-object
    import msgspec

    from airflow_provider_dataforseo.responses import decode_reply

    body = msgspec.json.encode(
        {
            "status_code": 20000,
            "tasks": [
                {
                    "id": "t",
                    "status_code": 20000,
                    "cost": 0.02006,
                    "result": [
                        {"items_count": 1, "items": [{"url": "https://a.com/"}]},
                        {"items_count": 2, "items": [{"url": "b.com"}, None]},
                    ],
                }
            ],
        }
    )
    result = parse_task_response(decode_reply(body, raw_items=True), endpoint=ENDPOINT)
    assert result.raw_items is not None
    assert [msgspec.json.decode(item) for item in result.raw_items] == [
        {"url": "https://a.com/"},
        {"url": "b.com"},
    ]
    assert result.item_urls == ["https://a.com/", "b.com"]
    assert result.malformed_items == 1 and result.item_count == 2 and result.items == []


@pytest.mark.parametrize(
    ("task_cost", "envelope_cost", "expected"),
    [
        (-5, 0.02003, 0.02003),
        (-0.00001, None, 0.0),
        (-math.inf, 0.02003, 0.02003),
        (0.02006, -5, 0.02006),
        (None, -5, 0.0),
        (-5, -5, 0.0),
    ],
)
def test_negative_cost_is_unusable_not_subtracted(
    task_cost: object, envelope_cost: object, expected: float
) -> None:
    payload = make_envelope([make_task([], cost=task_cost)], cost=envelope_cost)
    assert parse_task_response(payload, endpoint=ENDPOINT).cost_usd == expected
