"""DataForSeoHook against the emulator over loopback HTTP."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
import requests

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.exceptions import (
    DataForSeoAuthenticationError,
    DataForSeoError,
    DataForSeoInvalidRequestError,
    DataForSeoPaymentError,
    DataForSeoRateLimitError,
    DataForSeoServerError,
    InvalidTargetsError,
)
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.responses import match_items
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, conn_json

FAST_RETRY = {"retry_wait_min": 0.01, "retry_wait_max": 0.02, "max_attempts": 3}


def _hook(monkeypatch: pytest.MonkeyPatch, url: str, **kwargs: Any) -> DataForSeoHook:
    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_TEST", conn_json(url, **kwargs))
    return DataForSeoHook("dataforseo_test", **FAST_RETRY)


def _faults(emulator: Any, *faults: dict[str, Any]) -> None:
    """Script the emulator's next replies (one fault per request, in order)."""
    reply = requests.post(f"{emulator.url}/_emulator/faults", json={"faults": list(faults)}, timeout=5)
    reply.raise_for_status()


def _api_requests(emulator: Any) -> int:
    stats = requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()
    return int(stats["api_requests"])


@pytest.fixture(autouse=True)
def _clear_faults(emulator: Any) -> Any:
    yield
    requests.delete(f"{emulator.url}/_emulator/faults", timeout=5)


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"host": "http://127.0.0.1:8765"}, "http://127.0.0.1:8765"),
        ({"host": "http://127.0.0.1:8765/"}, "http://127.0.0.1:8765"),
        ({"host": "api.dataforseo.com"}, "https://api.dataforseo.com"),
        ({}, "https://api.dataforseo.com"),
        ({"extra": {"sandbox": True}}, "https://sandbox.dataforseo.com"),
        ({"extra": {"sandbox": "true"}}, "https://sandbox.dataforseo.com"),
        ({"extra": {"sandbox": False}}, "https://api.dataforseo.com"),
        ({"host": "http://127.0.0.1:9", "extra": {"sandbox": True}}, "http://127.0.0.1:9"),
    ],
)
def test_base_url(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], expected: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAFORSEO_URL",
        json.dumps({"conn_type": "dataforseo", "login": "a", "password": "b", **conn}),
    )
    assert DataForSeoHook("dataforseo_url").base_url == expected


def test_session_headers_and_timeouts(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    hook = _hook(monkeypatch, emulator.url)
    session = hook.get_conn()
    assert session is hook.get_conn()  # one session, reused
    assert session.headers["User-Agent"].startswith("airflow-provider-dataforseo/")
    assert "gzip" in session.headers["Accept-Encoding"]
    assert hook.timeout[0] == 10.0 and hook.timeout[1] > api.LIVE_TASK_TIMEOUT_SECONDS


def test_bulk_pages_summary_returns_items_matching_the_emulator(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    hook = _hook(monkeypatch, emulator.url)
    targets = ["https://example.com/", "example.org", "docs.python.org"]
    result = hook.bulk_pages_summary(targets, include_subdomains=False, rank_scale="one_hundred", tag="t1")
    matched = match_items(result.items, targets)
    expected = {t: summary_item(t, include_subdomains=False, rank_scale="one_hundred") for t in targets}
    assert matched.by_target == {t: item for t, item in expected.items() if item is not None}
    assert result.cost_usd == pytest.approx(0.02 + 0.00003 * len(result.items))
    assert result.data["tag"] == "t1"
    assert result.task_id


def test_test_connection_reports_login_and_balance(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    ok, message = _hook(monkeypatch, emulator.url).test_connection()
    assert ok is True
    assert message.startswith(f"{EMULATOR_LOGIN}, balance ") and message.endswith(" USD")


def test_test_connection_never_raises(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    ok, message = _hook(monkeypatch, emulator.url, password="wrong").test_connection()
    assert ok is False and "40100" in message
    ok, message = _hook(monkeypatch, "http://127.0.0.1:9").test_connection()
    assert ok is False and "connection to http://127.0.0.1:9 failed" in message


def test_wrong_credentials_fail_after_exactly_one_attempt(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    hook = _hook(monkeypatch, emulator.url, password="wrong")
    before = _api_requests(emulator)
    with pytest.raises(DataForSeoAuthenticationError) as info:
        hook.bulk_pages_summary(["example.com"])
    assert info.value.status_code == api.UNAUTHORIZED
    assert info.value.endpoint == api.BULK_PAGES_SUMMARY_PATH
    assert _api_requests(emulator) == before + 1


@pytest.mark.parametrize(
    ("fault", "kind", "code"),
    [
        ({"task_status": 40204}, DataForSeoPaymentError, 40204),
        ({"task_status": 40210}, DataForSeoPaymentError, 40210),
        ({"envelope_status": 40200, "http_status": 402}, DataForSeoPaymentError, 40200),
        ({"envelope_status": 40104}, DataForSeoAuthenticationError, 40104),
        ({"task_status": 40501}, DataForSeoInvalidRequestError, 40501),
        ({"envelope_status": 40000}, DataForSeoInvalidRequestError, 40000),
    ],
)
def test_permanent_errors_are_not_retried(
    monkeypatch: pytest.MonkeyPatch,
    emulator: Any,
    fault: dict[str, Any],
    kind: type[DataForSeoError],
    code: int,
) -> None:
    hook = _hook(monkeypatch, emulator.url)
    _faults(emulator, fault)
    before = _api_requests(emulator)
    with pytest.raises(kind) as info:
        hook.bulk_pages_summary(["example.com"])
    assert info.value.status_code == code
    assert info.value.status_message
    assert not info.value.retryable
    assert _api_requests(emulator) == before + 1
    if "task_status" in fault:
        assert info.value.task_id


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"http_status": 500}, DataForSeoServerError),
        ({"envelope_status": 50000}, DataForSeoServerError),
        ({"task_status": 50301}, DataForSeoServerError),
        ({"task_status": 50401}, DataForSeoServerError),
        ({"envelope_status": 40202}, DataForSeoRateLimitError),
        ({"task_status": 40209}, DataForSeoRateLimitError),
        ({"body": "not json"}, DataForSeoServerError),
        ({"tasks_null": True}, DataForSeoServerError),
    ],
)
def test_transient_errors_are_retried_then_succeed(
    monkeypatch: pytest.MonkeyPatch,
    emulator: Any,
    fault: dict[str, Any],
    kind: type[DataForSeoError],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook = _hook(monkeypatch, emulator.url)
    _faults(emulator, fault, fault)
    before = _api_requests(emulator)
    with caplog.at_level(logging.WARNING):
        result = hook.bulk_pages_summary(["https://example.com/"])
    assert _api_requests(emulator) == before + 3  # two faults, then success
    assert match_items(result.items, ["https://example.com/"]).by_target == {
        "https://example.com/": summary_item("https://example.com/")
    }
    assert caplog.text.count("retrying in") == 2
    assert kind.retryable


def test_transient_errors_give_up_after_max_attempts(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    hook = _hook(monkeypatch, emulator.url)
    _faults(emulator, *[{"task_status": 50301}] * 5)
    before = _api_requests(emulator)
    with pytest.raises(DataForSeoServerError) as info:
        hook.bulk_pages_summary(["example.com"])
    assert info.value.status_code == 50301
    assert _api_requests(emulator) == before + FAST_RETRY["max_attempts"]


def test_invalid_chunks_are_refused_before_sending(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    hook = _hook(monkeypatch, emulator.url)
    before = _api_requests(emulator)
    with pytest.raises(InvalidTargetsError, match="1001 targets"):
        hook.bulk_pages_summary([f"https://example.com/{i}" for i in range(1001)])
    with pytest.raises(InvalidTargetsError, match="101 main domains"):
        hook.bulk_pages_summary([f"site{i}.com" for i in range(101)])
    with pytest.raises(ValueError, match="rank_scale"):
        hook.bulk_pages_summary(["example.com"], rank_scale="one_million")
    with pytest.raises(ValueError, match="255"):
        hook.bulk_pages_summary(["example.com"], tag="x" * 256)
    assert _api_requests(emulator) == before


def test_secrets_never_reach_the_log(
    monkeypatch: pytest.MonkeyPatch, emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    token = base64.b64encode(f"{EMULATOR_LOGIN}:{EMULATOR_PASSWORD}".encode()).decode()
    hook = _hook(monkeypatch, emulator.url)
    _faults(emulator, {"http_status": 500}, {"task_status": 40501})
    with caplog.at_level(logging.DEBUG), pytest.raises(DataForSeoInvalidRequestError) as info:
        hook.bulk_pages_summary(["example.com"])
    assert caplog.records  # DEBUG logging of urllib3 and the retry warning were captured
    for text in (caplog.text, str(info.value), repr(info.value)):
        assert EMULATOR_PASSWORD not in text
        assert token not in text


def test_an_unusable_base_url_fails_at_once_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch, "ftp://127.0.0.1:8765")
    with pytest.raises(DataForSeoInvalidRequestError, match=r"Base URL 'ftp://127\.0\.0\.1:8765'") as info:
        hook.bulk_pages_summary(["example.com"])
    assert not info.value.retryable
    assert "None" not in str(info.value)


def test_a_refused_connection_names_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch, "http://127.0.0.1:9")
    with pytest.raises(DataForSeoServerError, match=r"connection to http://127\.0\.0\.1:9 failed"):
        hook.bulk_pages_summary(["example.com"])


def test_an_over_long_tag_is_refused_with_its_length(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    with pytest.raises(ValueError, match="got 300 characters"):
        _hook(monkeypatch, emulator.url).bulk_pages_summary(["example.com"], tag="x" * 300)


# -- bad configuration is refused before anything is sent ------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [([3, 20], (3.0, 20.0)), ((3, 20.5), (3.0, 20.5)), (5, 5.0), (2.5, 2.5)],
)
def test_timeout_takes_a_list_of_two_or_one_number(timeout: Any, expected: Any) -> None:
    hook = DataForSeoHook("dataforseo_test", timeout=timeout)
    assert hook.timeout == expected
    assert type(hook.timeout) is type(expected)


@pytest.mark.parametrize(
    "timeout",
    [
        [3],
        [3, 2, 1],
        [3, -1],
        [0, 5],
        (math.nan, 5),
        [3, math.inf],
        [True, 5],
        ["3", 5],
        "10",
        None,
        True,
        0,
        -1,
        math.inf,
        {"connect": 3, "read": 5},
    ],
)
def test_a_bad_timeout_is_refused_when_the_hook_is_made(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be") as info:
        DataForSeoHook("dataforseo_test", timeout=timeout)
    assert repr(timeout) in str(info.value)


def test_a_json_timeout_list_from_hook_params_works_over_http(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    """``hook_params`` from JSON/YAML give a list: it used to break every request inside requests."""
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_TEST", conn_json(emulator.url))
    operator = BulkPagesSummaryOperator(
        task_id="timeout_list",
        targets=["https://example.com/"],
        dataforseo_conn_id="dataforseo_test",
        hook_params=json.loads('{"timeout": [3, 20]}'),
    )
    assert operator.hook.timeout == (3.0, 20.0)
    result = operator.hook.bulk_pages_summary(["https://example.com/"])
    assert match_items(result.items, ["https://example.com/"]).by_target == {
        "https://example.com/": summary_item("https://example.com/")
    }


def _conn_hook(monkeypatch: pytest.MonkeyPatch, **conn: Any) -> DataForSeoHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAFORSEO_CONF",
        json.dumps(
            {"conn_type": "dataforseo", "login": EMULATOR_LOGIN, "password": EMULATOR_PASSWORD, **conn}
        ),
    )
    return DataForSeoHook("dataforseo_conf", **FAST_RETRY)


@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        (True, api.SANDBOX_URL),
        (False, api.API_URL),
        (None, api.API_URL),  # JSON null: the UI form's unset switch
        ("1", api.SANDBOX_URL),
        (" TRUE ", api.SANDBOX_URL),
        ("Yes", api.SANDBOX_URL),
        ("on", api.SANDBOX_URL),
        ("0", api.API_URL),
        ("False", api.API_URL),
        (" no", api.API_URL),
        ("OFF", api.API_URL),
        ("", api.API_URL),
        ("  ", api.API_URL),
        (1, api.SANDBOX_URL),  # JSON numbers typed into the extra
        (0, api.API_URL),
    ],
)
def test_sandbox_extra_values(monkeypatch: pytest.MonkeyPatch, sandbox: object, expected: str) -> None:
    assert _conn_hook(monkeypatch, extra={"sandbox": sandbox}).base_url == expected


@pytest.mark.parametrize("sandbox", ["sandbox", "ture", "y es", 2, -1, 1.0, [], {"on": True}])
def test_an_unrecognised_sandbox_value_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, sandbox: object
) -> None:
    """Not silently the paid production API (only base_url is asked: nothing may leave the machine)."""
    hook = _conn_hook(monkeypatch, extra={"sandbox": sandbox})
    with pytest.raises(DataForSeoInvalidRequestError) as info:
        _ = hook.base_url
    assert f"extra 'sandbox' must be true or false, got {sandbox!r}" in str(info.value)
    assert not info.value.retryable


def test_an_unrecognised_sandbox_value_fails_the_task_without_retries_or_requests(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    """Checked even when a host is given (a typo stays a typo); the emulator host keeps a
    regression on loopback."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_dataforseo.hooks.dataforseo import fail_task_on_permanent_errors

    hook = _conn_hook(monkeypatch, host=emulator.url, extra={"sandbox": "ture"})
    before = _api_requests(emulator)
    with pytest.raises(DataForSeoInvalidRequestError, match="got 'ture'") as info:
        hook.bulk_pages_summary(["example.com"])
    assert not info.value.retryable
    assert "_session" not in hook.__dict__  # no HTTP session was ever opened
    with pytest.raises(AirflowFailException, match="extra 'sandbox'"), fail_task_on_permanent_errors():
        hook.bulk_pages_summary(["example.com"])
    ok, message = hook.test_connection()
    assert ok is False and "got 'ture'" in message
    assert _api_requests(emulator) == before


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("http://127.0.0.1", 18765, "http://127.0.0.1:18765"),
        ("http://127.0.0.1/", 18765, "http://127.0.0.1:18765"),
        ("http://127.0.0.1:18765", 18765, "http://127.0.0.1:18765"),
        ("127.0.0.1", 18765, "https://127.0.0.1:18765"),
        ("127.0.0.1:18765", 18765, "https://127.0.0.1:18765"),
        ("http://[::1]", 9, "http://[::1]:9"),
        ("https://example.com/prefix", 8443, "https://example.com:8443/prefix"),
        ("http://127.0.0.1", None, "http://127.0.0.1"),
    ],
)
def test_the_port_field_is_used_when_the_host_names_none(
    monkeypatch: pytest.MonkeyPatch, host: str, port: int | None, expected: str
) -> None:
    assert _conn_hook(monkeypatch, host=host, port=port).base_url == expected


@pytest.mark.parametrize("host", ["http://127.0.0.1:8765", "127.0.0.1:8765"])
def test_two_different_ports_are_refused_naming_both(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    hook = _conn_hook(monkeypatch, host=host, port=18765)
    with pytest.raises(
        DataForSeoInvalidRequestError, match="names port 8765 but its Port field says 18765"
    ) as info:
        hook.bulk_pages_summary(["example.com"])
    assert not info.value.retryable
    assert "_session" not in hook.__dict__


def test_a_host_with_a_scheme_and_a_port_field_reaches_the_emulator(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    scheme_host, port = emulator.url.rsplit(":", 1)
    hook = _conn_hook(monkeypatch, host=scheme_host, port=int(port))
    assert hook.base_url == emulator.url
    ok, message = hook.test_connection()
    assert ok is True and message.startswith(f"{EMULATOR_LOGIN}, balance ")


def test_operator_and_sensor_refuse_a_bad_timeout_when_built() -> None:
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
    from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor

    with pytest.raises(ValueError, match=r"timeout must be .* got \[3, -1\]"):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], hook_params={"timeout": [3, -1]})
    with pytest.raises(ValueError, match=r"timeout must be .* got 'soon'"):
        BacklinksChangeSensor(
            task_id="y",
            targets=["a.com"],
            baseline_path="file:///tmp/b.json",
            hook_params={"timeout": "soon"},
        )
    ok = BulkPagesSummaryOperator(task_id="z", targets=["a.com"], hook_params={"timeout": [3, 20]})
    assert ok.hook_params == {"timeout": [3, 20]}  # kept as given (serialisable); the hook makes a tuple


@pytest.mark.parametrize(
    ("hook_params", "message"),
    [
        ({"timout": 5}, r"hook_params: unknown 'timout'; accepted: timeout, request_deadline, max_attempts"),
        ({"max_attempts": 0}, r"max_attempts must be an integer of at least 1, got 0"),
        ({"max_attempts": "3"}, r"max_attempts must be an integer of at least 1, got '3'"),
        ({"retry_wait_max": -1}, r"retry_wait_max must be a number of seconds >= 0, got -1"),
    ],
)
def test_operator_refuses_unusable_hook_params(hook_params: dict[str, Any], message: str) -> None:
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    with pytest.raises(ValueError, match=message):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], hook_params=hook_params)


def test_a_null_sandbox_switch_lets_the_prefixed_key_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"sandbox": None, "extra__dataforseo__sandbox": True}
    assert _conn_hook(monkeypatch, extra=extra).base_url == api.SANDBOX_URL
