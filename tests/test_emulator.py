"""The offline emulator, over real loopback HTTP (``requests`` against :class:`EmulatorServer`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer, create_app
from airflow_provider_dataforseo.emulator import data as emulator_data
from airflow_provider_dataforseo.emulator.__main__ import build_parser, connection_line

if TYPE_CHECKING:
    from collections.abc import Iterator

AUTH = ("emulator", "emulator")
TIMEOUT = 10
ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d+\.\d{4} sec\.$")
ENVELOPE_KEYS = {
    "version",
    "status_code",
    "status_message",
    "time",
    "cost",
    "tasks_count",
    "tasks_error",
    "tasks",
}
ITEM_KEYS = [
    "type",
    "url",
    "rank",
    "main_domain_rank",
    "backlinks",
    "first_seen",
    "lost_date",
    "backlinks_spam_score",
    "broken_backlinks",
    "broken_pages",
    "referring_domains",
    "referring_domains_nofollow",
    "referring_main_domains",
    "referring_main_domains_nofollow",
    "referring_ips",
    "referring_subnets",
    "referring_pages",
    "referring_pages_nofollow",
    "referring_links_tld",
    "referring_links_types",
    "referring_links_attributes",
    "referring_links_platform_types",
    "referring_links_semantic_locations",
    "referring_links_countries",
]
MAPS = [key for key in ITEM_KEYS if key.startswith("referring_links_")]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(balance_usd=1000.0)) as server:
        yield server


def post(server: EmulatorServer, body: object, auth: tuple[str, str] | None = AUTH) -> requests.Response:
    return requests.post(f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}", json=body, auth=auth, timeout=TIMEOUT)


def post_task(server: EmulatorServer, **task: Any) -> dict[str, Any]:
    """Post one task; check the envelope is a 200/20000 with one task; return the task."""
    response = post(server, [task])
    assert response.status_code == 200
    payload = response.json()
    assert set(payload) == ENVELOPE_KEYS
    assert payload["status_code"] == api.OK
    assert payload["tasks_count"] == 1
    task_out: dict[str, Any] = payload["tasks"][0]
    assert payload["tasks_error"] == (0 if task_out["status_code"] == api.OK else 1)
    assert payload["cost"] == task_out["cost"]
    return task_out


def items_of(task: dict[str, Any]) -> list[dict[str, Any]]:
    assert task["status_code"] == api.OK, task["status_message"]
    items: list[dict[str, Any]] = task["result"][0]["items"]
    return items


def user_data(server: EmulatorServer) -> dict[str, Any]:
    response = requests.get(f"{server.url}{api.USER_DATA_PATH}", auth=AUTH, timeout=TIMEOUT)
    assert response.status_code == 200
    payload = response.json()
    assert payload["status_code"] == api.OK and payload["cost"] == 0
    result: dict[str, Any] = payload["tasks"][0]["result"][0]
    return result


def balance(server: EmulatorServer) -> float:
    value: float = user_data(server)["money"]["balance"]
    return value


def assert_field_error(task: dict[str, Any], message: str) -> None:
    assert task["status_code"] == api.INVALID_FIELD
    assert task["status_message"] == message
    assert task["cost"] == 0
    assert task["result"] is None
    assert task["result_count"] == 0


def other_domains(n: int) -> list[str]:
    return [f"https://site{i}.org/page" for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Auth, routing, envelope-level errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [("emulator", "wrong"), ("someone", "emulator"), None])
def test_wrong_or_missing_credentials_answer_401_40100(
    emulator: EmulatorServer, auth: tuple[str, str] | None
) -> None:
    for response in (
        post(emulator, [{"targets": ["example.com"]}], auth=auth),
        requests.get(f"{emulator.url}{api.USER_DATA_PATH}", auth=auth, timeout=TIMEOUT),
    ):
        assert response.status_code == 401
        payload = response.json()
        assert set(payload) == ENVELOPE_KEYS
        assert payload["status_code"] == api.UNAUTHORIZED == 40100
        assert payload["status_message"] == "You are not authorized to access this resource."
        assert payload["tasks"] is None
        assert payload["cost"] == 0


def test_custom_credentials_are_honoured() -> None:
    with EmulatorServer(EmulatorConfig(login="alice", password="s3cret")) as server:
        assert (
            post(server, [{"targets": ["example.com"]}], auth=("alice", "s3cret")).json()["status_code"]
            == 20000
        )
        assert post(server, [{"targets": ["example.com"]}]).status_code == 401
        assert "s3cret" not in repr(server.config)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v3/nothing/here"),
        ("POST", "/v3/backlinks/summary/live"),
        ("GET", api.BULK_PAGES_SUMMARY_PATH),
    ],
)
def test_unknown_path_answers_404_40400(emulator: EmulatorServer, method: str, path: str) -> None:
    response = requests.request(method, f"{emulator.url}{path}", auth=AUTH, timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.json()["status_code"] == api.NOT_FOUND == 40400
    assert response.json()["status_message"] == "Not Found."


def test_two_tasks_answer_40000(emulator: EmulatorServer) -> None:
    before = balance(emulator)
    response = post(emulator, [{"targets": ["example.com"]}, {"targets": ["example.org"]}])
    assert response.status_code == 200
    payload = response.json()
    assert payload["status_code"] == api.TOO_MANY_TASKS_IN_LIVE_POST == 40000
    assert payload["status_message"] == "You can set only one task at a time."
    assert payload["tasks"] is None
    assert balance(emulator) == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", api.EMPTY_POST_DATA),
        (b"[]", api.EMPTY_POST_DATA),
        (b"{}", api.EMPTY_POST_DATA),
        (b"not json", api.INVALID_POST_DATA),
        (b'"a string"', api.INVALID_POST_DATA),
        (b"42", api.INVALID_POST_DATA),
        (b"null", api.INVALID_POST_DATA),
        (b"[1, 2]", api.INVALID_POST_DATA),
        (b'{"targets": ["example.com"]}', api.INVALID_POST_DATA),  # a bare task, not a task list
        (b"\xff\xfe", api.INVALID_POST_DATA),
    ],
)
def test_bad_post_data_is_an_envelope_error(emulator: EmulatorServer, raw: bytes, code: int) -> None:
    response = requests.post(
        f"{emulator.url}{api.BULK_PAGES_SUMMARY_PATH}",
        data=raw,
        auth=AUTH,
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    payload = response.json()
    assert payload["status_code"] == code
    assert payload["tasks"] is None
    if code == api.INVALID_POST_DATA:
        assert payload["status_message"] == "Invalid POST data."


# ---------------------------------------------------------------------------------------------
# Task validation (envelope 20000, task 40501)
# ---------------------------------------------------------------------------------------------


def test_1001_targets_fail_with_40501(emulator: EmulatorServer) -> None:
    task = post_task(emulator, targets=[f"https://example.com/p{i}" for i in range(1001)])
    assert_field_error(task, "Invalid Field: 'targets'. Maximum 1000 targets.")


def test_1000_targets_are_accepted(emulator: EmulatorServer) -> None:
    task = post_task(emulator, targets=[f"https://example.com/p{i}" for i in range(1000)])
    assert task["status_code"] == api.OK


def test_101_main_domains_fail_with_40501(emulator: EmulatorServer) -> None:
    task = post_task(emulator, targets=other_domains(101))
    assert_field_error(
        task,
        "Invalid Field: 'targets'. The URLs you set cannot belong to more than 100 different domains.",
    )


def test_subdomains_count_as_their_main_domain(emulator: EmulatorServer) -> None:
    targets = ["docs.x.com", "x.com", "https://blog.x.com/post", *other_domains(99)]
    task = post_task(emulator, targets=targets)
    assert task["status_code"] == api.OK
    # private PSL suffixes: two blogspot sites are two main domains
    assert_field_error(
        post_task(emulator, targets=["a.blogspot.com", "b.blogspot.com", *other_domains(99)]),
        "Invalid Field: 'targets'. The URLs you set cannot belong to more than 100 different domains.",
    )


@pytest.mark.parametrize(
    "target",
    [
        "example.com/page",  # a page without its scheme
        "example.com/",
        "ftp://example.com/file",
        "https://exa mple.com/",
        " example.com",
        "example.com\n",
        "",
        42,
        None,
        ["example.com"],
        "https://-bad-.com/",
        "https://under_score.com/",
        "co.uk",  # a public suffix, not a domain
        "localhost",
        "1.2.3.4",
        "https://1.2.3.4/",
        "https://[::1]/",
        "https://example.com:99999/",
        "https://user:pw@example.com/",
        "https:///path",
        "//example.com/path",
        "example.com:8080",
        "bücher.de",  # IDN must be sent as punycode
    ],
)
def test_invalid_target_fails_the_task(emulator: EmulatorServer, target: object) -> None:
    task = post_task(emulator, targets=["example.com", target])
    assert_field_error(task, "Invalid Field: 'targets'.")


@pytest.mark.parametrize(
    "target",
    [
        "example.com",
        "Example.COM",
        "docs.example.co.uk",
        "www.example.com",
        "xn--bcher-kva.de",
        "https://www.example.com/",
        "http://example.com",
        "HTTPS://example.com/Path?q=A",
        "https://example.com:8443/x",
    ],
)
def test_valid_target_is_accepted(emulator: EmulatorServer, target: str) -> None:
    assert post_task(emulator, targets=[target])["status_code"] == api.OK


@pytest.mark.parametrize("targets", [[], "example.com", None, {"0": "example.com"}])
def test_targets_missing_or_not_a_list(emulator: EmulatorServer, targets: object) -> None:
    assert_field_error(post_task(emulator, targets=targets), "Invalid Field: 'targets'.")
    assert_field_error(post_task(emulator, tag="no targets"), "Invalid Field: 'targets'.")


def test_tag_longer_than_255_fails(emulator: EmulatorServer) -> None:
    assert_field_error(post_task(emulator, targets=["example.com"], tag="x" * 256), "Invalid Field: 'tag'.")
    assert_field_error(post_task(emulator, targets=["example.com"], tag=5), "Invalid Field: 'tag'.")
    task = post_task(emulator, targets=["example.com"], tag="t" * 255)
    assert task["status_code"] == api.OK
    assert task["data"]["tag"] == "t" * 255


def test_unknown_field_is_named(emulator: EmulatorServer) -> None:
    task = post_task(emulator, targets=["example.com"], limit=10)
    assert_field_error(task, "Invalid Field: 'limit'.")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("include_subdomains", "true"),
        ("include_subdomains", 1),
        ("include_subdomains", None),
        ("rank_scale", "one_million"),
        ("rank_scale", None),
    ],
)
def test_bad_option_is_named(emulator: EmulatorServer, field: str, value: object) -> None:
    task = post_task(emulator, targets=["example.com"], **{field: value})
    assert_field_error(task, f"Invalid Field: '{field}'.")


# ---------------------------------------------------------------------------------------------
# Success: shape, cost, balance
# ---------------------------------------------------------------------------------------------


def test_success_shape(emulator: EmulatorServer) -> None:
    targets = ["https://example.com/", "example.org", "https://docs.example.com/a?b=C"]
    task = post_task(emulator, targets=targets, include_subdomains=False, tag="run-1")
    assert task["status_code"] == 20000 and task["status_message"] == "Ok."
    assert ID_RE.match(task["id"])
    assert TIME_RE.match(task["time"])
    assert task["path"] == ["v3", "backlinks", "bulk_pages_summary", "live"]
    assert task["data"] == {
        "api": "backlinks",
        "function": "bulk_pages_summary",
        "targets": targets,
        "include_subdomains": False,
        "tag": "run-1",
    }
    assert task["result_count"] == 1
    result = task["result"][0]
    assert result["total_count"] == result["items_count"] == len(result["items"])
    for item in result["items"]:
        assert list(item) == ITEM_KEYS
        assert item["type"] == "backlinks_page_summary"
        assert item["url"] in targets


def test_dict_keyed_body_is_accepted(emulator: EmulatorServer) -> None:
    response = post(emulator, {"0": {"targets": ["example.com", "https://example.com/about"]}})
    payload = response.json()
    assert payload["status_code"] == api.OK
    assert payload["tasks"][0]["status_code"] == api.OK
    same = post_task(emulator, targets=["example.com", "https://example.com/about"])
    assert payload["tasks"][0]["result"] == same["result"]


def test_same_request_twice_gives_identical_items(emulator: EmulatorServer) -> None:
    targets = [f"https://shop{i % 7}.example.net/item/{i}" for i in range(50)] + ["example.net"]
    first = post_task(emulator, targets=targets, rank_scale="one_hundred")
    second = post_task(emulator, targets=targets, rank_scale="one_hundred")
    assert json.dumps(items_of(first)) == json.dumps(items_of(second))
    assert first["id"] != second["id"]
    # the HTTP items are exactly the pure function's
    for item in items_of(first):
        assert item == emulator_data.summary_item(item["url"], rank_scale="one_hundred")


@pytest.mark.parametrize("n_targets", [1, 2, 37, 400])
def test_cost_is_per_request_plus_per_item(emulator: EmulatorServer, n_targets: int) -> None:
    response = post(
        emulator, [{"targets": [f"https://cost.example.com/{n_targets}/{i}" for i in range(n_targets)]}]
    )
    payload = response.json()
    task = payload["tasks"][0]
    n_items = len(items_of(task))
    expected = round(0.02 + 0.00003 * n_items, 5)
    assert task["cost"] == expected
    assert payload["cost"] == expected
    assert task["cost"] == pytest.approx(api.COST_PER_REQUEST_USD + api.COST_PER_ITEM_USD * n_items)


def test_docs_price_example_two_items(emulator: EmulatorServer) -> None:
    task = post_task(
        emulator, targets=["https://dataforseo.com/solutions", "https://dataforseo.com/about-us"]
    )
    assert len(items_of(task)) == 2  # both known to the emulated database
    assert task["cost"] == 0.02006


def test_balance_decreases_by_exactly_the_costs(emulator: EmulatorServer) -> None:
    before = balance(emulator)
    costs = []
    for n in (1, 10, 100):
        costs.append(
            post_task(emulator, targets=[f"https://bal.example.com/{n}/{i}" for i in range(n)])["cost"]
        )
    post_task(emulator, targets=["example.com"], tag="x" * 300)  # rejected: free
    after = balance(emulator)
    assert before - after == pytest.approx(sum(costs), abs=1e-9)
    money = user_data(emulator)["money"]
    assert money["total"] == 1000.0
    assert money["statistics"]["day"]["total"] == pytest.approx(money["total"] - money["balance"], abs=1e-9)


def test_insufficient_funds_is_task_level_40210() -> None:
    with EmulatorServer(EmulatorConfig(balance_usd=0.03)) as server:
        first = post_task(server, targets=["https://example.com/"])
        assert first["status_code"] == api.OK
        second = post_task(server, targets=["https://example.com/"])
        assert second["status_code"] == api.INSUFFICIENT_FUNDS == 40210
        assert second["status_message"] == "Insufficient funds."
        assert second["cost"] == 0 and second["result"] is None
        assert balance(server) == pytest.approx(0.03 - first["cost"], abs=1e-9)


def test_user_data_shape(emulator: EmulatorServer) -> None:
    response = requests.get(f"{emulator.url}{api.USER_DATA_PATH}", auth=AUTH, timeout=TIMEOUT)
    task = response.json()["tasks"][0]
    assert task["path"] == ["v3", "appendix", "user_data"]
    assert task["cost"] == 0
    result = task["result"][0]
    assert result["login"] == "emulator"
    assert result["timezone"] == "UTC"
    assert set(result["rates"]["limits"]) == {"day", "minute"}
    assert result["rates"]["limits"]["minute"]["total"] == api.DEFAULT_REQUESTS_PER_MINUTE
    assert set(result["money"]) == {"total", "balance", "limits", "statistics"}
    assert result["price"] == {}
    assert result["backlinks_subscription_expiry_date"] == "2027-12-31 00:00:00 +00:00"
    assert "emulator" not in json.dumps(result["money"])  # no credentials beyond the login


def test_large_replies_are_gzipped(emulator: EmulatorServer) -> None:
    response = post(emulator, [{"targets": [f"https://gz.example.com/{i}" for i in range(50)]}])
    assert response.headers.get("Content-Encoding") == "gzip"
    assert response.headers.get("Vary") == "Accept-Encoding"
    assert response.json()["tasks"][0]["status_code"] == api.OK


def test_a_gzipped_reply_holds_what_a_plain_one_holds(emulator: EmulatorServer) -> None:
    # the bulk reply is compressed in the endpoint (inside the latency), not by the middleware
    body = [{"targets": [f"https://gz.example.com/{i}" for i in range(50)]}]
    url = f"{emulator.url}{api.BULK_PAGES_SUMMARY_PATH}"
    replies = {
        encoding: requests.post(
            url, json=body, auth=AUTH, timeout=TIMEOUT, headers={"Accept-Encoding": encoding}
        )
        for encoding in ("gzip", "identity")
    }
    assert replies["gzip"].headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in replies["identity"].headers
    assert int(replies["gzip"].headers["Content-Length"]) < len(replies["identity"].content) / 3
    gz_task, plain_task = (replies[e].json()["tasks"][0] for e in ("gzip", "identity"))
    assert gz_task["result"] == plain_task["result"] and len(gz_task["result"][0]["items"]) > 40


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def test_rank_scale_one_hundred(emulator: EmulatorServer) -> None:
    targets = [f"site{i}.com" for i in range(60)] + [f"https://site{i}.com/" for i in range(40)]
    hundred = {
        item["url"]: item for item in items_of(post_task(emulator, targets=targets, rank_scale="one_hundred"))
    }
    thousand = {item["url"]: item for item in items_of(post_task(emulator, targets=targets))}
    assert hundred.keys() == thousand.keys()
    assert all(0 <= item["rank"] <= 100 and 0 <= item["main_domain_rank"] <= 100 for item in hundred.values())
    assert max(item["rank"] for item in thousand.values()) > 100
    for url, item in hundred.items():
        assert item["rank"] == round(thousand[url]["rank"] / 10)
        assert item["backlinks"] == thousand[url]["backlinks"]


def test_some_targets_get_no_item_and_order_differs(emulator: EmulatorServer) -> None:
    targets = [f"https://www.news{i % 90}.com/article/{i}" for i in range(500)]
    task = post_task(emulator, targets=targets)
    items = items_of(task)
    urls = [item["url"] for item in items]
    assert task["result"][0]["items_count"] == len(items)
    assert len(set(urls)) == len(urls)
    assert set(urls) < set(targets)
    missing = len(targets) - len(items)
    assert 3 <= missing <= 35  # ~3 %
    assert urls != [target for target in targets if target in set(urls)]  # not the request's order
    missing_targets = set(targets) - set(urls)
    assert all(emulator_data.summary_item(target) is None for target in missing_targets)


def test_include_subdomains_changes_a_domains_numbers(emulator: EmulatorServer) -> None:
    targets = ["example.com", "python.org", "docs.python.org", "https://python.org/about/"]
    wide = {i["url"]: i for i in items_of(post_task(emulator, targets=targets, include_subdomains=True))}
    narrow = {i["url"]: i for i in items_of(post_task(emulator, targets=targets, include_subdomains=False))}
    domains = [t for t in targets if "://" not in t]
    assert set(wide) == set(narrow) == set(targets)  # all known to the emulated database
    for domain in domains:
        assert wide[domain]["backlinks"] > narrow[domain]["backlinks"]
        assert wide[domain]["referring_domains"] >= narrow[domain]["referring_domains"]
    page = "https://python.org/about/"
    assert wide[page] == narrow[page]  # a page has no subdomains


def test_dates_parse_and_lost_date_follows_first_seen(emulator: EmulatorServer) -> None:
    items = items_of(post_task(emulator, targets=[f"https://blog{i % 80}.io/post/{i}" for i in range(400)]))
    with_lost = 0
    for item in items:
        first = item["first_seen"]
        lost = item["lost_date"]
        if first is not None:
            first_dt = datetime.strptime(first, "%Y-%m-%d %H:%M:%S %z")
            assert first_dt.utcoffset() == timedelta(0)
            assert first.endswith(" +00:00")
        else:
            assert item["backlinks"] == 0
        if lost is not None:
            with_lost += 1
            assert first is not None
            assert datetime.strptime(lost, "%Y-%m-%d %H:%M:%S %z") > datetime.strptime(
                first, "%Y-%m-%d %H:%M:%S %z"
            )
    assert 0.02 < with_lost / len(items) < 0.25  # ~10 % of pages


def test_items_are_internally_consistent() -> None:
    targets = [f"https://shop{i % 40}.de/p/{i}" for i in range(800)] + [f"brand{i}.co.uk" for i in range(200)]
    items = emulator_data.summary_items(targets)
    null_maps = empty_key = dotted_tld = both_country_keys = zero_pages = 0
    for item in items:
        assert item["referring_main_domains"] <= item["referring_domains"] <= item["referring_pages"]
        assert item["referring_pages"] <= item["backlinks"]
        assert item["referring_domains_nofollow"] <= item["referring_domains"]
        assert item["referring_main_domains_nofollow"] <= item["referring_main_domains"]
        assert item["referring_pages_nofollow"] <= item["referring_pages"]
        assert item["broken_backlinks"] <= item["backlinks"]
        assert item["referring_subnets"] <= item["referring_ips"] <= item["referring_domains"]
        assert 0 <= item["rank"] <= 1000 and 0 <= item["main_domain_rank"] <= 1000
        assert 0 <= item["backlinks_spam_score"] <= 100
        zero_pages += item["backlinks"] == 0
        for key in MAPS:
            value = item[key]
            if value is None:
                null_maps += 1
                continue
            assert all(isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in value.items())
            empty_key += "" in value
        if item["referring_links_types"] is not None:
            assert sum(item["referring_links_types"].values()) == item["backlinks"]
        tld = item["referring_links_tld"] or {}
        dotted_tld += any("." in key for key in tld)
        countries = item["referring_links_countries"] or {}
        both_country_keys += "WW" in countries and "" in countries
    assert 0.02 < null_maps / (len(items) * len(MAPS)) < 0.10  # ~5 %
    assert empty_key > 0 and dotted_tld > 0 and both_country_keys > 0 and zero_pages > 0
    domains = [item for item in items if "://" not in item["url"]]
    pages = [item for item in items if "://" in item["url"]]
    median = sorted(i["backlinks"] for i in domains)[len(domains) // 2]
    assert median > 50 * sorted(i["backlinks"] for i in pages)[len(pages) // 2]


def test_summary_item_is_pure_and_stable() -> None:
    first = emulator_data.summary_item("example.com", include_subdomains=False, rank_scale="one_hundred")
    again = emulator_data.summary_item("example.com", include_subdomains=False, rank_scale="one_hundred")
    assert json.dumps(first) == json.dumps(again)
    assert first is not None and first["url"] == "example.com"
    with pytest.raises(ValueError, match="rank_scale"):
        emulator_data.summary_item("example.com", rank_scale="one_million")
    # a main domain's rank with subdomains is the main_domain_rank of its pages
    page = emulator_data.summary_item("https://example.com/about")
    domain = emulator_data.summary_item("example.com")
    assert page is not None and domain is not None
    assert page["main_domain_rank"] == domain["main_domain_rank"] == domain["rank"]


def test_host_case_does_not_change_the_numbers() -> None:
    lower = emulator_data.summary_item("https://example.com/About")
    upper = emulator_data.summary_item("HTTPS://Example.COM/About")
    assert lower is not None and upper is not None
    assert upper["url"] == "HTTPS://Example.COM/About"  # echoed as sent
    assert {**upper, "url": lower["url"]} == lower


def test_create_app_keeps_state() -> None:
    app = create_app(EmulatorConfig(balance_usd=7.5))
    assert app.state.emulator.balance_usd == 7.5


# ---------------------------------------------------------------------------------------------
# Control API: scripted faults and counters (not part of the real API)
# ---------------------------------------------------------------------------------------------


def control(server: EmulatorServer, method: str, what: str, body: object = None) -> requests.Response:
    return requests.request(method, f"{server.url}/_emulator/{what}", json=body, timeout=TIMEOUT)


@pytest.fixture
def faults(emulator: EmulatorServer) -> Iterator[None]:
    yield
    control(emulator, "DELETE", "faults")


def test_scripted_faults_replace_the_next_replies_in_order(emulator: EmulatorServer, faults: None) -> None:
    before = control(emulator, "GET", "stats").json()
    scripted = [
        {"task_status": 40204},
        {"envelope_status": 40200, "http_status": 402},
        {"http_status": 500},
        {"body": "not json"},
        {"tasks_null": True},
        {"task_status": 50301, "status_message": "Busy."},
    ]
    assert control(emulator, "POST", "faults", {"faults": scripted}).json() == {"faults_pending": 6}
    balance_before = emulator.state.balance_usd
    replies = [post(emulator, [{"targets": ["example.com"], "tag": "f"}]) for _ in range(7)]

    task = replies[0].json()["tasks"][0]
    assert replies[0].status_code == 200 and replies[0].json()["status_code"] == 20000
    assert (task["status_code"], task["cost"], task["result"]) == (40204, 0, None)
    assert ID_RE.match(task["id"]) and task["data"]["tag"] == "f"
    assert replies[0].json()["tasks_error"] == 1
    assert replies[1].status_code == 402 and replies[1].json()["status_code"] == 40200
    assert replies[1].json()["tasks"] is None
    assert replies[2].status_code == 500 and replies[2].json()["status_code"] == 50000
    assert replies[3].status_code == 200 and replies[3].text == "not json"
    assert replies[4].json()["status_code"] == 20000 and replies[4].json()["tasks"] is None
    assert replies[5].json()["tasks"][0]["status_message"] == "Busy."
    assert replies[6].json()["tasks"][0]["status_code"] == 20000  # faults used up
    assert emulator.state.balance_usd == pytest.approx(balance_before - replies[6].json()["cost"], abs=1e-9)

    after = control(emulator, "GET", "stats").json()
    assert after["api_requests"] == before["api_requests"] + 7
    assert after["faults_pending"] == 0


def test_faults_apply_to_user_data_and_can_be_cleared(emulator: EmulatorServer, faults: None) -> None:
    control(emulator, "POST", "faults", {"faults": [{"envelope_status": 40104}, {"task_status": 40501}]})
    response = requests.get(f"{emulator.url}{api.USER_DATA_PATH}", auth=AUTH, timeout=TIMEOUT)
    assert response.json()["status_code"] == 40104
    assert control(emulator, "GET", "stats").json()["faults_pending"] == 1
    assert control(emulator, "DELETE", "faults").json() == {"faults_pending": 0}
    assert user_data(emulator)["login"] == "emulator"


def test_unauthorised_requests_are_counted(emulator: EmulatorServer) -> None:
    before = control(emulator, "GET", "stats").json()["api_requests"]
    assert post(emulator, [{"targets": ["example.com"]}], auth=("emulator", "nope")).status_code == 401
    assert control(emulator, "GET", "stats").json()["api_requests"] == before + 1


@pytest.mark.parametrize(
    "body",
    [
        {"faults": [{"task_status": "40204"}]},
        {"faults": [{"nonsense": 1}]},
        {"faults": {}},
        [],
        {"faults": [{}]},
    ],
)
def test_malformed_faults_are_refused(emulator: EmulatorServer, faults: None, body: object) -> None:
    response = control(emulator, "POST", "faults", body)
    assert response.status_code == 422
    assert "error" in response.json()
    assert control(emulator, "GET", "stats").json()["faults_pending"] == 0


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_help_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_dataforseo.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    for option in ("--host", "--port", "--login", "--password", "--balance"):
        assert option in done.stdout


def test_cli_defaults_come_from_the_environment() -> None:
    env = {
        "DATAFORSEO_EMULATOR_LOGIN": "bob",
        "DATAFORSEO_EMULATOR_PASSWORD": "pw",
        "DATAFORSEO_EMULATOR_PORT": "9999",
    }
    args = build_parser(env).parse_args([])
    assert (args.host, args.port, args.login, args.password, args.balance) == (
        "127.0.0.1",
        9999,
        "bob",
        "pw",
        100.0,
    )
    args = build_parser({}).parse_args(["--port", "0", "--balance", "5"])
    assert (args.port, args.login, args.password, args.balance) == (0, "emulator", "emulator", 5.0)


def test_connection_line_never_shows_a_custom_password() -> None:
    url = "http://127.0.0.1:8765"
    line = connection_line(EmulatorConfig(), url)
    conn = json.loads(line.split("AIRFLOW_CONN_DATAFORSEO_DEFAULT=", 1)[1].strip("'"))
    assert conn == {"conn_type": "dataforseo", "login": "emulator", "password": "emulator", "host": url}
    assert "hunter2" not in connection_line(EmulatorConfig(password="hunter2"), url)


def test_cli_serves_until_terminated() -> None:
    env = {**os.environ, "DATAFORSEO_EMULATOR_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_dataforseo.emulator", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        # the socket listens before the line is printed: the request waits for uvicorn if needed
        response = requests.get(f"{match.group(1)}{api.USER_DATA_PATH}", auth=AUTH, timeout=TIMEOUT)
        assert response.json()["status_code"] == api.OK
    finally:
        proc.terminate()
        proc.wait(timeout=10)
