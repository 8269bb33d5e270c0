"""The emulator's command line: a busy port is one clear line, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import TYPE_CHECKING

from airflow_provider_dataforseo.emulator.__main__ import main

if TYPE_CHECKING:
    import pytest


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


def test_busy_port_is_one_line_suggesting_port_0(capsys: pytest.CaptureFixture[str]) -> None:
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        status = main(["--port", str(port)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port 0" in err


def test_busy_port_from_the_command_prints_no_traceback() -> None:
    """The installed entry point (as ``python -m``): exit status 1, one line on stderr, nothing else."""
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "airflow_provider_dataforseo.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"dataforseo-emulator: port {port} on 127.0.0.1 is already in use (another emulator?); "
        "use --port 0 for a free port (the URL is printed), or --port N for another one"
    ]
    assert done.stdout == ""


def test_an_address_that_cannot_be_bound_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--host", "192.0.2.1", "--port", "0"])  # TEST-NET-1: not an address of this machine
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("dataforseo-emulator: cannot listen on http://192.0.2.1:0: ")
    assert "check --host" in err
