"""Connection hints (issue 11 item 7): a Base URL ending in /v3, and transport failures that name
the URL and the fix, retried only as far as retrying can help. Against the real emulator and a
real closed port on loopback."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dataforseo.exceptions import DataForSeoInvalidRequestError
from airflow_provider_dataforseo.hooks.dataforseo import (
    UNREACHABLE_ATTEMPTS,
    DataForSeoHook,
    DataForSeoUnreachableError,
)
from tests.conftest import EMULATOR_LOGIN, conn_json

if TYPE_CHECKING:
    from airflow_provider_dataforseo.emulator import EmulatorServer

HOOK_LOG = "airflow_provider_dataforseo.hooks.dataforseo"


def _hook(monkeypatch: pytest.MonkeyPatch, url: str) -> DataForSeoHook:
    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_HINTS", conn_json(url))
    return DataForSeoHook("dataforseo_hints", retry_wait_min=0.001, retry_wait_max=0.01, max_attempts=5)


def _attempts(caplog: pytest.LogCaptureFixture) -> int:
    """HTTP attempts the hook made: one more than the retries it logged."""
    return 1 + sum(1 for record in caplog.records if record.getMessage().startswith("Attempt "))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: bound to reserve a free number, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("suffix", ["/v3", "/v3/", "/V3"])
def test_a_base_url_ending_in_v3_works_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, emulator: EmulatorServer, suffix: str
) -> None:
    hook = _hook(monkeypatch, emulator.url + suffix)
    with caplog.at_level(logging.INFO, logger=HOOK_LOG):
        account = hook.user_data()
    assert account["login"] == EMULATOR_LOGIN  # /v3/appendix/user_data, not /v3/v3/...
    assert hook.base_url == emulator.url
    assert any("ends in /v3" in record.getMessage() for record in caplog.records)
    result = hook.bulk_pages_summary(["example.com"])
    assert result.items[0]["url"] == "example.com"


def test_a_refused_connection_asks_whether_the_emulator_runs_and_tries_twice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    hook = _hook(monkeypatch, f"http://127.0.0.1:{closed_port}")
    with caplog.at_level(logging.WARNING, logger=HOOK_LOG), pytest.raises(DataForSeoUnreachableError) as info:
        hook.user_data()
    message = str(info.value)
    assert f"connection to http://127.0.0.1:{closed_port} failed" in message
    assert f"is the emulator running on port {closed_port}?" in message
    assert f"dataforseo-emulator --port {closed_port}" in message
    assert _attempts(caplog) == UNREACHABLE_ATTEMPTS == 2  # not max_attempts=5


def test_test_connection_reports_the_refused_hint(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    ok, message = _hook(monkeypatch, f"http://localhost:{closed_port}").test_connection()
    assert ok is False
    assert f"is the emulator running on port {closed_port}?" in message


def test_a_host_name_that_does_not_resolve_names_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hook = _hook(monkeypatch, "https://api.dataforseo.invalid")  # .invalid never resolves (RFC 2606)
    with caplog.at_level(logging.WARNING, logger=HOOK_LOG), pytest.raises(DataForSeoUnreachableError) as info:
        hook.user_data()
    message = str(info.value)
    assert "the host name 'api.dataforseo.invalid' does not resolve" in message
    assert "https://api.dataforseo.com" in message  # the likely intended host
    assert _attempts(caplog) == UNREACHABLE_ATTEMPTS


@pytest.mark.parametrize("host", ["https://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_tls_to_the_plain_http_emulator_says_write_http_and_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, emulator: EmulatorServer, host: str
) -> None:
    hook = _hook(monkeypatch, host.format(port=emulator.port))
    requests_before = _api_requests(emulator)
    with (
        caplog.at_level(logging.WARNING, logger=HOOK_LOG),
        pytest.raises(DataForSeoInvalidRequestError) as info,
    ):
        hook.bulk_pages_summary(["example.com"])
    message = str(info.value)
    assert f"write the connection's Host as http://127.0.0.1:{emulator.port}" in message
    assert "plain HTTP" in message
    assert not info.value.retryable
    assert _attempts(caplog) == 1
    assert _api_requests(emulator) == requests_before  # no request reached the API


def _api_requests(emulator: EmulatorServer) -> Any:
    return emulator.state.stats()["api_requests"]
