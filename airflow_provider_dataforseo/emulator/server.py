"""Run the emulator in a background thread on loopback: for tests, demos and local DAG runs.

::

    with EmulatorServer(EmulatorConfig(balance_usd=5.0)) as emulator:
        requests.get(f"{emulator.url}/v3/appendix/user_data", auth=("emulator", "emulator"))
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import uvicorn

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator.app import create_app

if TYPE_CHECKING:
    from datetime import date
    from types import TracebackType

    from fastapi import FastAPI

    from airflow_provider_dataforseo.emulator.app import EmulatorState
    from airflow_provider_dataforseo.emulator.faults import FaultConfig

log = logging.getLogger(__name__)

#: Default API login and password of the emulator (not secrets: a local test double).
DEFAULT_LOGIN: Final = "emulator"
DEFAULT_PASSWORD: Final = "emulator"
#: How long :meth:`EmulatorServer.start` waits for the server to answer, seconds.
START_TIMEOUT_SECONDS: Final = 10.0
#: How long :meth:`EmulatorServer.stop` waits for the server thread to end, seconds.
STOP_TIMEOUT_SECONDS: Final = 10.0


@dataclass(frozen=True)
class EmulatorConfig:
    """How an emulator behaves.

    :param login: the API login it accepts (HTTP Basic).
    :param password: the API password it accepts (never shown in ``repr`` or logs).
    :param balance_usd: the account's starting balance, USD; each successful task takes its cost.
    :param host: interface to bind; loopback by default.
    :param port: TCP port; ``0`` picks a free one.
    :param seed: seed of the (deterministic) task ids.
    :param latency_seconds: response time of each bulk_pages_summary request, seconds (the
        emulator's own work counts in it: it waits what is left after computing the reply).
    :param max_simultaneous: enforce the API's simultaneous-request limit (the real one is 30;
        above it: 40209); ``None`` does not enforce it.
    :param requests_per_minute: enforce a per-minute limit (the real default is 2000; above it:
        40202); ``None`` does not enforce it.
    :param faults: seeded random faults for a share of requests (see
        :mod:`~airflow_provider_dataforseo.emulator.faults`); ``None`` injects none. Changeable at
        run time through ``/_emulator/fault-injection``.
    :param simulated_date: the simulated date (UTC day) items stand on at start; ``None`` for the
        data's epoch, 2026-11-01. Changeable at run time through ``/_emulator/clock`` (see
        :mod:`~airflow_provider_dataforseo.emulator.simclock`).
    """

    login: str = DEFAULT_LOGIN
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    balance_usd: float = 100.0
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    latency_seconds: float = 0.0
    max_simultaneous: int | None = None
    requests_per_minute: int | None = None
    faults: FaultConfig | None = None
    simulated_date: date | None = None


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` (``port`` 0: a free port) and listening.

    Listening at once means clients that connect before uvicorn has started wait in the backlog
    instead of being refused.

    :param host: an IPv4 or IPv6 address or a host name.
    :param port: TCP port, or 0.
    :return: the bound socket; its port is ``sock.getsockname()[1]``.
    :raises OSError: when the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that signals when it has started listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


class EmulatorServer:
    """The emulator served by uvicorn in a daemon thread; a context manager.

    :param config: the emulator's configuration (default :class:`EmulatorConfig` ``()``).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config if config is not None else EmulatorConfig()
        self.app: FastAPI = create_app(self.config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port.

        :raises RuntimeError: when the server is not running.
        """
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        """The API root to use as the connection's host, e.g. ``"http://127.0.0.1:54321"``."""
        return base_url(self.config.host, self.port)

    @property
    def state(self) -> EmulatorState:
        """The account state (balance, counters) of the served app."""
        state: EmulatorState = self.app.state.emulator
        return state

    def start(self) -> EmulatorServer:
        """Bind, start serving in a daemon thread, and wait until ``user_data`` answers.

        :return: ``self``.
        :raises RuntimeError: when the server does not answer within
            :data:`START_TIMEOUT_SECONDS` or its thread dies.
        """
        if self._thread is not None:
            return self
        sock = bind_socket(self.config.host, self.config.port)
        self._socket, self._port = sock, sock.getsockname()[1]
        uv_config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = _Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="dataforseo-emulator", daemon=True
        )
        self._thread.start()
        try:
            self._wait_ready(time.monotonic() + START_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise
        log.info("DataForSEO emulator listening on %s", self.url)
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Wait for uvicorn's start, then for a ``200`` from ``user_data`` (bounded by ``deadline``)."""
        assert self._server is not None and self._thread is not None
        while not self._server.ready.wait(timeout=0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the emulator's server thread ended during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start within {START_TIMEOUT_SECONDS} s")
        pause = threading.Event()
        while not self._answers_user_data(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the emulator did not answer within {START_TIMEOUT_SECONDS} s")
            pause.wait(0.02)

    def _answers_user_data(self, *, timeout: float) -> bool:
        """Whether ``GET user_data`` with the configured credentials answers 20000."""
        pair = f"{self.config.login}:{self.config.password}".encode()
        request = urllib.request.Request(
            f"{self.url}{api.USER_DATA_PATH}",
            headers={"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")},
        )
        try:
            with urllib.request.urlopen(request, timeout=min(timeout, 2.0)) as response:
                return bool(json.load(response).get("status_code") == api.OK)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (at most :data:`STOP_TIMEOUT_SECONDS`)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                log.warning("DataForSEO emulator thread did not stop within %s s", STOP_TIMEOUT_SECONDS)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self._port = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
