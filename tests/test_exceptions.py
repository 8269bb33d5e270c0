"""exceptions.py: status code -> error kind (the API doc's table), retryable flags, text, pickling."""

from __future__ import annotations

import pickle

import pytest

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import (
    DataForSeoAuthenticationError,
    DataForSeoError,
    DataForSeoInvalidRequestError,
    DataForSeoPaymentError,
    DataForSeoRateLimitError,
    DataForSeoServerError,
    InvalidTargetsError,
    error_for_status,
)

ENDPOINT = api.BULK_PAGES_SUMMARY_PATH

# (status_code, http_status, kind): every row of the status table in dataforseo-api.md
STATUS_TABLE: list[tuple[int | None, int | None, type[DataForSeoError]]] = [
    (None, 401, DataForSeoAuthenticationError),
    (40100, None, DataForSeoAuthenticationError),
    (40104, None, DataForSeoAuthenticationError),
    (None, 402, DataForSeoPaymentError),
    (40200, None, DataForSeoPaymentError),
    (40201, None, DataForSeoPaymentError),
    (40203, None, DataForSeoPaymentError),
    (40204, None, DataForSeoPaymentError),
    (40205, None, DataForSeoPaymentError),
    (40206, None, DataForSeoPaymentError),
    (40207, None, DataForSeoPaymentError),
    (40210, None, DataForSeoPaymentError),
    (40202, None, DataForSeoRateLimitError),
    (40209, None, DataForSeoRateLimitError),
    (40000, None, DataForSeoInvalidRequestError),
    (40006, None, DataForSeoInvalidRequestError),
    (40400, None, DataForSeoInvalidRequestError),
    (40501, None, DataForSeoInvalidRequestError),
    (40503, None, DataForSeoInvalidRequestError),
    (50000, None, DataForSeoServerError),
    (50001, None, DataForSeoServerError),
    (50301, None, DataForSeoServerError),
    (50303, None, DataForSeoServerError),
    (50304, None, DataForSeoServerError),
    (50401, None, DataForSeoServerError),
    (None, 500, DataForSeoServerError),
    (None, None, DataForSeoServerError),
]

RETRYABLE = {
    DataForSeoAuthenticationError: False,
    DataForSeoPaymentError: False,
    DataForSeoRateLimitError: True,
    DataForSeoInvalidRequestError: False,
    DataForSeoServerError: True,
}


@pytest.mark.parametrize(("status_code", "http_status", "kind"), STATUS_TABLE)
def test_error_for_status_maps_every_documented_code(
    status_code: int | None, http_status: int | None, kind: type[DataForSeoError]
) -> None:
    error = error_for_status(
        status_code, "some message", task_id="task-1", endpoint=ENDPOINT, http_status=http_status
    )
    assert type(error) is kind
    assert error.retryable is RETRYABLE[kind]
    expected_code = status_code if status_code is not None else http_status
    assert error.status_code == expected_code
    assert error.status_message == "some message"
    assert error.task_id == "task-1"
    assert error.endpoint == ENDPOINT


@pytest.mark.parametrize(
    ("kind", "retryable"),
    [
        (DataForSeoError, False),
        (DataForSeoAuthenticationError, False),
        (DataForSeoPaymentError, False),
        (DataForSeoRateLimitError, True),
        (DataForSeoInvalidRequestError, False),
        (DataForSeoServerError, True),
    ],
)
def test_retryable_flag_per_class(kind: type[DataForSeoError], retryable: bool) -> None:
    assert kind.retryable is retryable
    assert kind("m").retryable is retryable


def test_access_denied_40204_is_not_retryable() -> None:
    # no subscription answers 40204 on every call: retrying would never help
    error = error_for_status(api.ACCESS_DENIED, "Access denied.")
    assert isinstance(error, DataForSeoPaymentError)
    assert not error.retryable


def test_api_status_code_wins_over_http_status() -> None:
    error = error_for_status(40501, "Invalid Field: 'targets'.", http_status=500)
    assert type(error) is DataForSeoInvalidRequestError
    assert error.status_code == 40501
    error = error_for_status(50401, "timeout", http_status=200)
    assert type(error) is DataForSeoServerError
    assert error.status_code == 50401


@pytest.mark.parametrize(
    ("http_status", "kind"),
    [
        (404, DataForSeoInvalidRequestError),
        (429, DataForSeoRateLimitError),
        (502, DataForSeoServerError),
        (503, DataForSeoServerError),
    ],
)
def test_http_status_without_api_code(http_status: int, kind: type[DataForSeoError]) -> None:
    error = error_for_status(None, "no JSON", http_status=http_status)
    assert type(error) is kind
    assert error.status_code == http_status


def test_str_names_code_message_endpoint_and_task() -> None:
    error = error_for_status(
        40501, "Invalid Field: 'targets'.", task_id="11281115-0696-0216-0000-c7b0b4b8bab9", endpoint=ENDPOINT
    )
    assert str(error) == (
        "DataForSEO 40501: Invalid Field: 'targets'. | endpoint /v3/backlinks/bulk_pages_summary/live"
        " | task 11281115-0696-0216-0000-c7b0b4b8bab9"
    )
    assert error.args == (str(error),)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (40100, "API login and password"),
        (40204, "Backlinks API subscription"),
        (40209, "Lower max_active_requests"),
    ],
)
def test_str_adds_a_hint_for_what_to_do(code: int, hint: str) -> None:
    text = str(error_for_status(code, "msg", task_id="t-9", endpoint=ENDPOINT))
    assert text.startswith(f"DataForSEO {code}: msg | endpoint {ENDPOINT} | task t-9. ")
    assert hint in text


def test_str_without_endpoint_or_task() -> None:
    assert str(DataForSeoServerError("connection failed")) == "DataForSEO: connection failed"


@pytest.mark.parametrize(("status_code", "http_status", "kind"), STATUS_TABLE)
def test_pickle_round_trip_keeps_every_attribute(
    status_code: int | None, http_status: int | None, kind: type[DataForSeoError]
) -> None:
    error = error_for_status(status_code, "msg ü", task_id="t-1", endpoint=ENDPOINT, http_status=http_status)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is kind
    assert (copy.status_code, copy.status_message, copy.task_id, copy.endpoint) == (
        error.status_code,
        "msg ü",
        "t-1",
        ENDPOINT,
    )
    assert copy.retryable is error.retryable
    assert str(copy) == str(error)
    assert copy.args == error.args


def test_pickle_round_trip_with_missing_optional_attributes() -> None:
    copy = pickle.loads(pickle.dumps(DataForSeoServerError("timed out")))
    assert (copy.status_code, copy.status_message, copy.task_id, copy.endpoint) == (
        None,
        "timed out",
        None,
        None,
    )


def test_invalid_targets_error_lists_every_entry() -> None:
    error = InvalidTargetsError([(0, "", "empty"), (3, 7, "not a string but int")])
    assert isinstance(error, ValueError)
    assert error.errors == [(0, "", "empty"), (3, 7, "not a string but int")]
    assert str(error) == (
        "2 invalid target(s), nothing was sent:\n  #0: '': empty\n  #3: 7: not a string but int"
    )


def test_invalid_targets_error_truncates_after_fifty() -> None:
    error = InvalidTargetsError([(i, f"bad{i}", "why") for i in range(53)])
    text = str(error)
    assert text.startswith("53 invalid target(s), nothing was sent:\n")
    assert "#49: 'bad49': why" in text
    assert "bad50" not in text
    assert text.endswith("\n  ... and 3 more")
    assert len(error.errors) == 53


def test_invalid_targets_error_pickle_round_trip() -> None:
    # regression: the default pickling rebuilt the error from its message and crashed
    error = InvalidTargetsError([(0, "", "empty"), (2, None, "not a string but NoneType")])
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InvalidTargetsError
    assert copy.errors == error.errors
    assert str(copy) == str(error)
