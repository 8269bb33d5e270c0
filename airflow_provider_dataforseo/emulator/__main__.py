"""``dataforseo-emulator``: serve the offline DataForSEO emulator in the foreground.

::

    dataforseo-emulator [--host 127.0.0.1] [--port 8765] [--login emulator] [--password emulator]
                        [--balance 100] [--latency S] [--max-simultaneous N] [--per-minute-limit N]
                        [--fault KIND=SHARE ...] [--fault-mix SHARE] [--fault-seed N] [--hang-seconds S]
                        [--slow-seconds S] [--drop-share X] [--reject-share X] [--reject-target T ...]
                        [--date YYYY-MM-DD]

Defaults of login, password and port also come from ``DATAFORSEO_EMULATOR_LOGIN``,
``DATAFORSEO_EMULATOR_PASSWORD`` and ``DATAFORSEO_EMULATOR_PORT``. Binds loopback unless
``--host`` says otherwise. ``--date`` sets the simulated date the items stand on (default
2026-11-01, the data's epoch; later dates evolve them, see
:mod:`airflow_provider_dataforseo.emulator.clock`; change it at run time with ``POST
/_emulator/clock``). Fault injection (``--fault``, ``--fault-mix``, ...) is described in
:mod:`airflow_provider_dataforseo.emulator.faults`. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import TYPE_CHECKING, Final

import uvicorn

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import faults, simclock
from airflow_provider_dataforseo.emulator.app import create_app
from airflow_provider_dataforseo.emulator.server import (
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    EmulatorConfig,
    base_url,
    bind_socket,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import date

DEFAULT_PORT: Final = 8765
ENV_LOGIN: Final = "DATAFORSEO_EMULATOR_LOGIN"
ENV_PASSWORD: Final = "DATAFORSEO_EMULATOR_PASSWORD"
ENV_PORT: Final = "DATAFORSEO_EMULATOR_PORT"


def _port(text: str) -> int:
    """argparse type: a TCP port 0-65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def _simulated_date(text: str) -> date:
    """argparse type: a simulated date ``YYYY-MM-DD`` within the emulator's range."""
    try:
        return simclock.parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; defaults read from ``environ`` (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="dataforseo-emulator",
        description="Offline emulator of the DataForSEO v3 API (backlinks/bulk_pages_summary/live "
        "and appendix/user_data) with deterministic synthetic data.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=_port,
        default=_port(env.get(ENV_PORT, str(DEFAULT_PORT))),
        help=f"TCP port, 0 for a free one (default: ${ENV_PORT} or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--login",
        default=env.get(ENV_LOGIN, DEFAULT_LOGIN),
        help=f"API login (default: ${ENV_LOGIN} or emulator)",
    )
    parser.add_argument(
        "--password",
        default=env.get(ENV_PASSWORD, DEFAULT_PASSWORD),
        help=f"API password (default: ${ENV_PASSWORD} or emulator)",
    )
    parser.add_argument("--balance", type=float, default=100.0, help="starting balance, USD (default: 100)")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds each bulk request takes (default: 0)"
    )
    parser.add_argument(
        "--max-simultaneous",
        type=int,
        nargs="?",
        const=api.MAX_SIMULTANEOUS_REQUESTS,
        default=None,
        metavar="N",
        help="enforce the simultaneous-request limit, N or the API's 30 (above it: 40209)",
    )
    parser.add_argument(
        "--per-minute-limit",
        type=int,
        nargs="?",
        const=api.DEFAULT_REQUESTS_PER_MINUTE,
        default=None,
        metavar="N",
        help="enforce a requests-per-minute limit, N or the API's default 2000 (above it: 40202)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: info)",
    )
    parser.add_argument(
        "--date",
        type=_simulated_date,
        default=None,
        help=f"simulated date the data stand on, YYYY-MM-DD (default: {simclock.EPOCH.isoformat()}); "
        "change it at run time with POST /_emulator/clock",
    )
    faults.add_cli_arguments(parser)
    return parser


def connection_line(config: EmulatorConfig, url: str) -> str:
    """The one line telling where the emulator listens and which Airflow connection to use.

    The password is shown only when it is the public default ``emulator``; a custom one is
    replaced by ``***`` (credentials are never printed).
    """
    password = config.password if config.password == DEFAULT_PASSWORD else "***"
    conn = {"conn_type": "dataforseo", "login": config.login, "password": password, "host": url}
    return (
        f"DataForSEO emulator listening on {url} (balance {config.balance_usd} USD); use "
        f"AIRFLOW_CONN_DATAFORSEO_DEFAULT='{json.dumps(conn, separators=(',', ':'))}'"
    )


def bind_error_line(host: str, port: int, error: OSError) -> str:
    """The one line printed when the emulator cannot listen on ``host:port`` (no traceback)."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"dataforseo-emulator: port {port} on {host} is already in use (another emulator?); "
            "use --port 0 for a free port (the URL is printed), or --port N for another one"
        )
    reason = error.strerror or str(error)
    hint = "use --port 0 for a free port" if port else "check --host"
    return f"dataforseo-emulator: cannot listen on {base_url(host, port)}: {reason}; {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dataforseo-emulator``: parse, bind, print the connection, serve.

    :param argv: arguments without the program name (``sys.argv[1:]`` by default).
    :return: the exit status: 0 after Ctrl-C, 1 when the address cannot be bound (one line on
        stderr says why).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fault_config = faults.config_from_args(args)
    except faults.FaultConfigError as exc:
        parser.error(str(exc))
    config = EmulatorConfig(
        login=args.login,
        password=args.password,
        balance_usd=args.balance,
        host=args.host,
        port=args.port,
        latency_seconds=args.latency,
        max_simultaneous=args.max_simultaneous,
        requests_per_minute=args.per_minute_limit,
        faults=fault_config,
        simulated_date=args.date,
    )
    try:
        sock = bind_socket(config.host, config.port)
    except OSError as exc:
        print(bind_error_line(config.host, config.port, exc), file=sys.stderr, flush=True)
        return 1
    url = base_url(config.host, sock.getsockname()[1])
    print(connection_line(config, url), flush=True)
    if fault_config is not None:
        print(f"Injecting {faults.describe(fault_config)}", flush=True)
    if args.date is not None:
        print(f"Simulated date: {args.date.isoformat()}", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level=args.log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
