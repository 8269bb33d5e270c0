"""The emulator's account limits: simultaneous requests (40209), per minute (40202), latency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.limits import AccountLimits

AUTH = ("emulator", "emulator")


def test_per_minute_window_slides() -> None:
    now = [0.0]
    limits = AccountLimits(requests_per_minute=2, clock=lambda: now[0])
    assert limits.enter() is None
    limits.exit()
    assert limits.enter() is None
    limits.exit()
    assert limits.enter() == (api.RATE_LIMIT_PER_MINUTE, "Rate limit exceeded: too many requests per minute.")
    now[0] = 60.0
    assert limits.enter() is None


def test_simultaneous_limit_refuses_the_request_over_it() -> None:
    limits = AccountLimits(max_simultaneous=2)
    assert limits.enter() is None and limits.enter() is None
    assert limits.enter() == (api.TOO_MANY_SIMULTANEOUS_REQUESTS, "Too many simultaneous requests.")
    limits.exit()
    assert limits.enter() is None
    assert limits.peak_in_flight == 2


def test_emulator_answers_40209_over_the_simultaneous_limit() -> None:
    config = EmulatorConfig(latency_seconds=0.3, max_simultaneous=3)
    with EmulatorServer(config) as server:
        barrier = threading.Barrier(6)

        def post(i: int) -> int:
            barrier.wait()
            body = [{"targets": [f"https://site{i}.com/"]}]
            reply = requests.post(
                f"{server.url}{api.BULK_PAGES_SUMMARY_PATH}", json=body, auth=AUTH, timeout=10
            )
            return int(reply.json()["status_code"])

        with ThreadPoolExecutor(6) as pool:
            codes = sorted(pool.map(post, range(6)))
        assert codes.count(api.OK) >= 3
        assert api.TOO_MANY_SIMULTANEOUS_REQUESTS in codes
        assert server.app.state.limits.peak_in_flight == 3
        # the control API reports the same figures (the deployment test reads them there)
        stats = requests.get(f"{server.url}/_emulator/stats", timeout=5).json()
        assert stats["peak_in_flight"] == 3 and stats["in_flight"] == 0
        assert stats["refused"] == {str(api.TOO_MANY_SIMULTANEOUS_REQUESTS): codes.count(40209)}
        assert stats["paid_requests"] == codes.count(api.OK)
