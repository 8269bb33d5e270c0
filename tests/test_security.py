"""Secrets never reach a log, at any level; the emulator binds loopback unless told otherwise."""

from __future__ import annotations

import base64
import io
import logging
import socket
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.__main__ import build_parser
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, run_dag

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = base64.b64encode(f"{EMULATOR_LOGIN}:{EMULATOR_PASSWORD}".encode()).decode("ascii")
SECRETS = {"password": EMULATOR_PASSWORD, "Basic token": TOKEN}
FAST = {"retry_wait_min": 0.001, "retry_wait_max": 0.002, "timeout": (5.0, 5.0)}
#: ``dag.test()`` runs the task under Airflow's in-process test supervisor, whose comms log every
#: message at DEBUG, ``MaskSecret(value=...)`` included (Airflow 3.3, ``InProcessSupervisorComms.send``
#: in ``airflow/sdk/execution_time/supervisor.py``). That harness is not the task's log: the real
#: supervisor logs such a message as "(body omitted)". These lines, and only these, are set aside.
HARNESS_LINE = "msg=MaskSecret(value="


@pytest.fixture
def debug_logging() -> Iterator[io.StringIO]:
    """DEBUG for every logger (urllib3 and requests included) and for Airflow's task log.

    Yields what Airflow's stdlib log handler writes (it was bound to the stream of the moment it was
    configured, so it is pointed at a buffer here); structlog's own lines go to stdout (``capfd``).
    """
    import airflow._shared.logging.structlog as core_structlog
    import airflow.sdk._shared.logging.structlog as sdk_structlog

    tries = [core_structlog.PER_LOGGER_LEVELS, sdk_structlog.PER_LOGGER_LEVELS]
    saved_levels = [dict(trie) for trie in tries]
    names = ["", "urllib3", "requests", "airflow", "airflow.task", "airflow_provider_dataforseo"]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, logger.level) for logger in loggers]
    handlers = [(handler, handler.level) for handler in logging.getLogger().handlers]
    for trie in tries:
        trie[""] = logging.DEBUG
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    buffer = io.StringIO()
    # Airflow's own handler only: pytest's capture handlers are StreamHandlers too
    streams = [(h, h.setStream(buffer)) for h, _ in handlers if type(h) is logging.StreamHandler]
    for handler, _ in handlers:
        handler.setLevel(logging.DEBUG)
    yield buffer
    for stream_handler, stream in streams:
        stream_handler.setStream(stream)
    for trie, levels in zip(tries, saved_levels, strict=True):
        trie.clear()
        trie.update(levels)
    for logger, level in saved:
        logger.setLevel(level)
    for handler, level in handlers:
        handler.setLevel(level)


def _fault_free(emulator: Any) -> None:
    requests.delete(f"{emulator.url}/_emulator/faults", timeout=5)
    requests.delete(f"{emulator.url}/_emulator/fault-injection", timeout=5)


def _dag(dag_id: str, **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        BulkPagesSummaryOperator(task_id="fetch", targets=["example.com", "https://example.org/a"], **kwargs)
    return dag


def _task_state(run: Any) -> str:
    return str(next(ti.state for ti in run.get_task_instances() if ti.task_id == "fetch"))


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_a_failing_dag_at_debug_level_never_logs_the_password_or_the_basic_token(
    emulator: Any, capfd: pytest.CaptureFixture[str], debug_logging: io.StringIO
) -> None:
    """The task log of ``dag.test()`` is what it prints: every record rendered by Airflow's logging."""
    _fault_free(emulator)
    try:
        # 1. transient faults, retried, then a permanent refusal: the task fails at once
        scripted = [{"http_status": 500}, {"body": "<html>proxy error</html>"}, {"task_status": 40204}]
        requests.post(f"{emulator.url}/_emulator/faults", json={"faults": scripted}, timeout=5)
        first = run_dag(_dag("security_permanent", hook_params={**FAST, "max_attempts": 5}))
        # 2. the connection closed mid-body on every attempt: retries run out
        reply = requests.put(
            f"{emulator.url}/_emulator/fault-injection", json={"rates": {"disconnect": 1.0}}, timeout=5
        )
        reply.raise_for_status()
        second = run_dag(_dag("security_transient", hook_params={**FAST, "max_attempts": 2}))
    finally:
        _fault_free(emulator)
    output = capfd.readouterr()
    log_text = f"{output.out}\n{output.err}\n{debug_logging.getvalue()}"

    assert _task_state(first) == "failed" and _task_state(second) == "failed"
    assert "DataForSEO 40204: Access denied." in log_text  # the failures are in the log...
    assert "failed: ChunkedEncodingError" in log_text
    assert "[debug" in output.out and "urllib3.connectionpool" in log_text  # ...at DEBUG, urllib3's too
    assert '"POST /v3/backlinks/bulk_pages_summary/live HTTP/1.1" 500' in log_text
    for name, secret in SECRETS.items():
        leaks = [line for line in log_text.splitlines() if secret in line and HARNESS_LINE not in line]
        assert leaks == [], f"the {name} appears in the log: {leaks}"


def test_the_hook_error_of_a_refused_login_carries_no_secret(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_dataforseo.exceptions import DataForSeoAuthenticationError
    from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
    from tests.conftest import conn_json

    _fault_free(emulator)
    requests.post(f"{emulator.url}/_emulator/faults", json={"faults": [{"http_status": 401}]}, timeout=5)
    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_SECURITY", conn_json(emulator.url))
    hook = DataForSeoHook("dataforseo_security", **FAST)
    with caplog.at_level(logging.DEBUG), pytest.raises(DataForSeoAuthenticationError) as info:
        hook.bulk_pages_summary(["example.com"])
    for text in (str(info.value), repr(info.value), repr(info.value.__reduce__()), caplog.text, repr(hook)):
        for secret in SECRETS.values():
            assert secret not in text


def test_the_emulator_binds_loopback_unless_told_otherwise() -> None:
    assert EmulatorConfig().host == "127.0.0.1"
    assert build_parser({}).parse_args([]).host == "127.0.0.1"
    with EmulatorServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server._socket is not None and server._socket.getsockname()[0] == "127.0.0.1"
        others = [a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
        for address in {a for a in others if not a.startswith("127.")}:
            with socket.socket() as probe:
                probe.settimeout(1)
                assert probe.connect_ex((address, server.port)) != 0  # not reachable from outside


def test_the_emulator_logs_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    config = EmulatorConfig(login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD)
    assert EMULATOR_PASSWORD not in repr(config)
    with caplog.at_level(logging.DEBUG), EmulatorServer(config) as server:
        for auth in ((EMULATOR_LOGIN, EMULATOR_PASSWORD), (EMULATOR_LOGIN, "wrong")):
            requests.post(
                f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}",
                json=[{"targets": ["a.com"]}],
                auth=auth,
                timeout=5,
            )
    for secret in SECRETS.values():
        assert secret not in caplog.text
