"""The emulator's seeded fault injection: configuration, determinism, each fault on the wire, CLI."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.__main__ import build_parser
from airflow_provider_dataforseo.emulator.faults import (
    FAULT_KINDS,
    NOT_JSON_BODY,
    FaultConfig,
    FaultConfigError,
    FaultInjector,
    InjectedFault,
    config_from_args,
    describe,
    drop_items,
)
from airflow_provider_dataforseo.exceptions import (
    DataForSeoError,
    DataForSeoRateLimitError,
    DataForSeoServerError,
)
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from tests.conftest import conn_json

if TYPE_CHECKING:
    from collections.abc import Iterator

AUTH = ("emulator", "emulator")
ROUTE = "/_emulator/fault-injection"
TARGETS = [f"https://site{i}.example.com/" for i in range(40)]


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rates": {"meteor": 0.1}}, "unknown fault kind 'meteor'; known: http_500, status_40202"),
        ({"rates": {"http_500": 1.5}}, "rates['http_500'] must be a number from 0 to 1, got 1.5"),
        ({"rates": {"http_500": True}}, "rates['http_500'] must be a number from 0 to 1, got True"),
        ({"rates": {"http_500": 0.6, "hang": 0.6}}, "fault shares sum to 1.2, more than 1"),
        ({"rates": [0.1]}, "rates must be an object of kind -> share, got [0.1]"),
        ({"seed": "7"}, "seed must be an integer, got '7'"),
        ({"hang_seconds": -1}, "hang_seconds must be a number of seconds >= 0, got -1"),
        ({"slow_seconds": float("inf")}, "slow_seconds must be a number of seconds >= 0, got inf"),
        ({"drop_share": 2}, "drop_share must be a number from 0 to 1, got 2"),
        ({"reject_share": -0.1}, "reject_share must be a number from 0 to 1, got -0.1"),
        ({"reject_targets": "a.com"}, "reject_targets must be a list of strings, got 'a.com'"),
        ({"reject_targets": [1]}, "reject_targets must be a list of strings, got [1]"),
        ({"bogus": 1}, "unknown keys ['bogus']; known: ['drop_share', 'hang_seconds'"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(FaultConfigError) as info:
        FaultConfig.from_json(settings)
    assert str(info.value).startswith(message)


def test_config_round_trips_through_json_and_mix_spreads_the_rate() -> None:
    config = FaultConfig.from_json(
        {"rates": {"hang": 0.1, "slow": 0}, "seed": 3, "reject_targets": ["b.com", "a.com"]}
    )
    assert config.rates == {"hang": 0.1}  # zero shares dropped
    assert config.to_json() == {
        "rates": {"hang": 0.1},
        "seed": 3,
        "hang_seconds": 30.0,
        "slow_seconds": 1.0,
        "drop_share": 0.1,
        "reject_share": 0.0,
        "reject_targets": ["a.com", "b.com"],
        "trickle_seconds": 0.5,
        "trickle_bytes": 1,
    }
    assert FaultConfig.from_json(config.to_json()) == config
    mix = FaultConfig.mix(0.26, seed=5)
    assert set(mix.rates) == set(FAULT_KINDS) and sum(mix.rates.values()) == pytest.approx(0.26)
    assert mix.active and not FaultConfig().active
    assert FaultConfig(reject_share=0.01).active


# ---------------------------------------------------------------------------------------------
# Determinism and shares
# ---------------------------------------------------------------------------------------------


def _kinds(injector: FaultInjector, bodies: list[bytes]) -> dict[bytes, str | None]:
    chosen = {}
    for body in bodies:
        fault = injector.choose(body)
        chosen[body] = fault.kind if fault else None
    return chosen


def test_choices_are_deterministic_under_a_seed_whatever_the_arrival_order() -> None:
    bodies = [f"body {i}".encode() for i in range(300)]
    config = FaultConfig.mix(0.5, seed=42)
    forward = _kinds(FaultInjector(config), bodies)
    backward = _kinds(FaultInjector(config), list(reversed(bodies)))
    assert forward == backward
    assert _kinds(FaultInjector(FaultConfig.mix(0.5, seed=43)), bodies) != forward
    assert set(forward.values()) == {None, *FAULT_KINDS}


def test_a_repeated_body_gets_a_fresh_draw_each_time() -> None:
    injector = FaultInjector(FaultConfig(rates={"http_500": 0.5}, seed=1))
    draws = [injector.choose(b"same body") for _ in range(64)]
    assert {d.kind if d else None for d in draws} == {"http_500", None}  # retries are not doomed
    again = FaultInjector(FaultConfig(rates={"http_500": 0.5}, seed=1))
    assert [again.choose(b"same body") for _ in range(64)] == draws
    assert injector.stats()["requests_seen"] == 64


def test_shares_are_honoured_over_many_requests() -> None:
    injector = FaultInjector(FaultConfig(rates={"http_500": 0.15, "truncated": 0.05}, seed=9))
    for i in range(10_000):
        injector.choose(f"request {i}".encode())
    injected = injector.stats()["injected"]
    # a seeded hash is a fair coin: 10,000 draws land within 4 standard deviations of the share
    assert 1500 - 143 <= injected["http_500"] <= 1500 + 143
    assert 500 - 88 <= injected["truncated"] <= 500 + 88


def test_rejected_targets_are_the_same_every_time() -> None:
    injector = FaultInjector(FaultConfig(reject_share=0.1, reject_targets=frozenset({"named.com"}), seed=4))
    targets = [f"site{i}.com" for i in range(2000)]
    first = [t for t in targets if injector.rejects(t)]
    assert first == [t for t in targets if FaultInjector(injector.config).rejects(t)]
    assert 200 - 54 <= len(first) <= 200 + 54
    assert injector.rejects("named.com") and not injector.rejects(12)
    assert injector.rejected_in(["named.com", "x.org", None]) == ["named.com"]


def test_drop_items_removes_at_least_one_item_and_keeps_the_counts() -> None:
    task = {
        "result": [{"items_count": 3, "total_count": 3, "items": [{"url": "a"}, {"url": "b"}, {"url": "c"}]}]
    }
    drop_items(InjectedFault("drop_items", "token"), task, share=0.0)
    result = task["result"][0]
    assert len(result["items"]) == 2 and result["items_count"] == 3 and result["total_count"] == 3
    empty: dict[str, Any] = {"result": None}
    drop_items(InjectedFault("drop_items", "token"), empty, share=0.5)
    assert empty == {"result": None}


# ---------------------------------------------------------------------------------------------
# Each fault on the wire
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(balance_usd=100.0)) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _no_faults(server: EmulatorServer) -> Iterator[None]:
    yield
    requests.delete(f"{server.url}{ROUTE}", timeout=5)


def _inject(server: EmulatorServer, **settings: Any) -> None:
    reply = requests.put(f"{server.url}{ROUTE}", json=settings, timeout=5)
    assert reply.status_code == 200, reply.text


def _post(server: EmulatorServer, targets: list[str] = TARGETS, timeout: float = 10) -> requests.Response:
    return requests.post(
        f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}", json=[{"targets": targets}], auth=AUTH, timeout=timeout
    )


def _balance(server: EmulatorServer) -> float:
    return float(requests.get(f"{server.url}/_emulator/stats", timeout=5).json()["balance_usd"])


@pytest.mark.parametrize(
    ("kind", "http_status", "envelope_status"),
    [
        ("http_500", 500, api.INTERNAL_ERROR),
        ("status_40202", 200, api.RATE_LIMIT_PER_MINUTE),
        ("status_40209", 200, api.TOO_MANY_SIMULTANEOUS_REQUESTS),
        ("status_50000", 200, api.INTERNAL_ERROR),
        ("status_50301", 200, api.TEMPORARILY_UNAVAILABLE),
        ("status_50401", 200, api.LIVE_TASK_TIMEOUT),
    ],
)
def test_status_faults_answer_the_code_with_no_task_and_charge_nothing(
    server: EmulatorServer, kind: str, http_status: int, envelope_status: int
) -> None:
    _inject(server, rates={kind: 1.0})
    balance = _balance(server)
    reply = _post(server)
    body = reply.json()
    assert (reply.status_code, body["status_code"], body["tasks"], body["cost"]) == (
        http_status,
        envelope_status,
        None,
        0,
    )
    assert _balance(server) == balance
    assert requests.get(f"{server.url}{ROUTE}", timeout=5).json()["injected"] == {kind: 1}


def test_task_error_fails_one_task_inside_a_20000_envelope(server: EmulatorServer) -> None:
    _inject(server, rates={"task_error": 1.0}, seed=2)
    balance = _balance(server)
    body = _post(server).json()
    task = body["tasks"][0]
    assert body["status_code"] == api.OK and body["tasks_error"] == 1
    assert task["status_code"] in (40202, 40209, 50000, 50301, 50401)
    assert task["result"] is None and task["cost"] == 0 and task["data"]["targets"] == TARGETS
    assert _balance(server) == balance


def test_not_json_truncated_and_disconnect_bodies(server: EmulatorServer) -> None:
    _inject(server, rates={"not_json": 1.0})
    reply = _post(server)
    assert (reply.status_code, reply.text) == (200, NOT_JSON_BODY)

    _inject(server, rates={"truncated": 1.0})
    reply = _post(server)
    assert reply.status_code == 200 and reply.text.startswith('{"version":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)

    _inject(server, rates={"disconnect": 1.0})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _post(server)


def test_hang_outlasts_the_read_timeout_and_slow_does_not(server: EmulatorServer) -> None:
    _inject(server, rates={"hang": 1.0}, hang_seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        _post(server, timeout=0.3)
    _inject(server, rates={"slow": 1.0}, slow_seconds=0.05)
    assert _post(server, timeout=5).json()["tasks"][0]["status_code"] == api.OK


def test_trickle_sends_every_piece_inside_the_read_timeout_and_the_whole_reply_in_the_end(
    server: EmulatorServer,
) -> None:
    _inject(server, rates={"trickle": 1.0}, trickle_seconds=0.2, trickle_bytes=1)
    with requests.post(
        f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}",
        json=[{"targets": TARGETS}],
        auth=AUTH,
        timeout=(5, 1),
        stream=True,
    ) as reply:
        pieces = [reply.raw.read(1) for _ in range(8)]  # each within the 1 s read timeout
    assert b"".join(pieces) == b'{"versi' + b"o"
    _inject(server, rates={"trickle": 1.0}, trickle_seconds=0.001, trickle_bytes=4096)
    trickled = _post(server).json()
    assert trickled["status_code"] == api.OK and trickled["tasks"][0]["result_count"] == 1
    assert FaultConfig.from_json({"trickle_seconds": 2, "trickle_bytes": 10}).trickle_bytes == 10
    with pytest.raises(FaultConfigError, match="trickle_bytes must be an integer of at least 1, got 0"):
        FaultConfig(trickle_bytes=0)
    args = build_parser({}).parse_args(
        ["--fault", "trickle=0.5", "--trickle-seconds", "0.1", "--trickle-bytes", "8"]
    )
    config = config_from_args(args)
    assert config is not None and (config.trickle_seconds, config.trickle_bytes) == (0.1, 8)


def test_drop_items_leaves_fewer_items_than_items_count(server: EmulatorServer) -> None:
    _inject(server, rates={"drop_items": 1.0}, drop_share=0.25)
    result = _post(server).json()["tasks"][0]["result"][0]
    assert result["items_count"] > len(result["items"]) >= 1
    assert result["items_count"] == result["total_count"]


def test_rejected_targets_fail_their_task_with_40501(server: EmulatorServer) -> None:
    _inject(server, reject_targets=[TARGETS[7]])
    task = _post(server).json()["tasks"][0]
    assert (task["status_code"], task["status_message"], task["cost"]) == (
        api.INVALID_FIELD,
        "Invalid Field: 'targets'.",
        0,
    )
    assert _post(server, TARGETS[:7]).json()["tasks"][0]["status_code"] == api.OK
    assert requests.get(f"{server.url}{ROUTE}", timeout=5).json()["rejected_tasks"] == 1


def test_user_data_and_bad_requests_are_not_faulted(server: EmulatorServer) -> None:
    _inject(server, rates={"http_500": 1.0})
    assert requests.get(f"{server.url}{api.USER_DATA_PATH}", auth=AUTH, timeout=5).status_code == 200
    wrong = requests.post(
        f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}", json=[{"targets": TARGETS}], auth=("x", "y"), timeout=5
    )
    assert wrong.status_code == 401  # credentials are checked before any fault


def test_admin_endpoint_shows_replaces_and_clears(server: EmulatorServer) -> None:
    url = f"{server.url}{ROUTE}"
    assert requests.get(url, timeout=5).json()["config"]["rates"] == {}
    bad = requests.put(url, json={"rates": {"http_500": 2}}, timeout=5)
    assert bad.status_code == 422
    assert bad.json() == {"error": "rates['http_500'] must be a number from 0 to 1, got 2"}
    not_json = requests.put(url, data=b"{", timeout=5)
    assert not_json.status_code == 422 and not_json.json() == {"error": "the body must be a JSON object"}
    shown = requests.put(url, json={"rates": {"slow": 0.5}, "seed": 8}, timeout=5).json()
    assert shown["config"]["rates"] == {"slow": 0.5} and shown["config"]["seed"] == 8
    assert requests.delete(url, timeout=5).json()["config"]["rates"] == {}


# ---------------------------------------------------------------------------------------------
# The hook's reading of every fault: transient ones are retried, with the right kind and code
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("http_500", DataForSeoServerError, api.INTERNAL_ERROR),
        ("status_40202", DataForSeoRateLimitError, api.RATE_LIMIT_PER_MINUTE),
        ("status_40209", DataForSeoRateLimitError, api.TOO_MANY_SIMULTANEOUS_REQUESTS),
        ("status_50000", DataForSeoServerError, api.INTERNAL_ERROR),
        ("status_50301", DataForSeoServerError, api.TEMPORARILY_UNAVAILABLE),
        ("status_50401", DataForSeoServerError, api.LIVE_TASK_TIMEOUT),
        ("hang", DataForSeoServerError, None),
        ("disconnect", DataForSeoServerError, None),
        ("truncated", DataForSeoServerError, None),
        ("not_json", DataForSeoServerError, None),
        ("trickle", DataForSeoServerError, None),  # each byte 0.5 s apart: past the 0.3 s read timeout
    ],
)
def test_the_hook_retries_each_transient_fault_then_reports_it(
    server: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    error: type[DataForSeoError],
    code: int | None,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATAFORSEO_FAULTS", conn_json(server.url, login="emulator", password="emulator")
    )
    hook = DataForSeoHook(
        "dataforseo_faults", max_attempts=2, retry_wait_min=0.001, retry_wait_max=0.002, timeout=(5, 0.3)
    )
    _inject(server, rates={kind: 1.0}, hang_seconds=0.6)
    with pytest.raises(error) as info:
        hook.bulk_pages_summary(TARGETS)
    assert info.value.retryable and info.value.status_code == code
    assert requests.get(f"{server.url}{ROUTE}", timeout=5).json()["injected"] == {kind: 2}  # retried once


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_flags_build_the_fault_configuration() -> None:
    flags = "--fault http_500=0.1 --fault hang=0.05 --fault-seed 7 --hang-seconds 2 --reject-target a.com"
    flags += " --reject-share 0.01 --drop-share 0.3 --slow-seconds 0.5"
    args = build_parser({}).parse_args(flags.split())
    config = config_from_args(args)
    assert config == FaultConfig(
        rates={"http_500": 0.1, "hang": 0.05},
        seed=7,
        hang_seconds=2.0,
        slow_seconds=0.5,
        drop_share=0.3,
        reject_share=0.01,
        reject_targets=frozenset({"a.com"}),
    )
    assert describe(config) == (
        "faults (seed 7): http_500 10.0%, hang 5.0%, 40501 for 1.0% of targets + 1 named"
    )
    mix = config_from_args(build_parser({}).parse_args(["--fault-mix", "0.2", "--fault", "slow=0"]))
    assert mix is not None and set(mix.rates) == set(FAULT_KINDS) - {"slow"}
    assert config_from_args(build_parser({}).parse_args([])) is None
    assert describe(None) == "no faults"


@pytest.mark.parametrize("flag", ["meteor=0.1", "http_500", "http_500=2", "http_500=x"])
def test_cli_refuses_bad_fault_flags(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["--fault", flag])
    assert "--fault" in capsys.readouterr().err


def test_faults_from_the_config_apply_from_the_start() -> None:
    config = config_from_args(build_parser({}).parse_args(["--fault", "status_50301=1"]))
    with EmulatorServer(EmulatorConfig(faults=config)) as emulator:
        assert _post(emulator).json()["status_code"] == api.TEMPORARILY_UNAVAILABLE


def test_cli_account_limits_default_to_the_api_s_when_given_without_a_value() -> None:
    args = build_parser({}).parse_args(["--max-simultaneous", "--per-minute-limit"])
    assert (args.max_simultaneous, args.per_minute_limit) == (30, 2000)
    args = build_parser({}).parse_args(["--max-simultaneous", "3"])
    assert (args.max_simultaneous, args.per_minute_limit) == (3, None)
