"""A total deadline per HTTP request: connect, send, headers and the whole body.

``requests`` (and urllib3 below it) bound each socket operation, not the exchange: a server that
trickles its reply one byte at a time, each byte inside the read timeout, keeps a request alive
for as long as it likes. :class:`Deadline` bounds the whole exchange:

- the connect and read timeouts of the request are cut to the time left, so connecting and
  waiting for the headers end by the deadline;
- :func:`read_body` reads the body under a timer that shuts the socket down at the deadline, so a
  trickling body ends there too, and raises :class:`DeadlineExceeded` (a transient fault: the
  caller retries it).

The live endpoint answers 50401 after 120 s of work (``api.LIVE_TASK_TIMEOUT_SECONDS``), so a
deadline must be longer than that plus the time to send a reply of up to a few MB: the hook's
default is :data:`DEFAULT_REQUEST_DEADLINE_SECONDS`.

Pure module: no Airflow import.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from typing import TYPE_CHECKING, Final

import requests

from airflow_provider_dataforseo import api

if TYPE_CHECKING:
    from collections.abc import Callable

#: Default total deadline of one request, seconds: well past the API's 120 s live-task limit
#: (after which it answers 50401), and past the hook's 180 s default read timeout.
DEFAULT_REQUEST_DEADLINE_SECONDS: Final = 2.5 * api.LIVE_TASK_TIMEOUT_SECONDS


class DeadlineExceeded(Exception):
    """The request's whole exchange did not end within its deadline; it was cut off.

    :param seconds: the deadline, seconds.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no complete reply within the request deadline of {seconds:g} s")


class Deadline:
    """The end of one request's exchange, ``seconds`` from now.

    :param seconds: the total deadline, seconds (> 0).
    :param clock: monotonic clock (injectable for tests).
    :raises ValueError: for a deadline that is not a positive finite number.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = check_deadline(seconds)
        self._clock = clock
        self.ends_at = clock() + self.seconds

    def left(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.ends_at - self._clock())

    def timeout(self, timeout: float | tuple[float, float]) -> tuple[float, float]:
        """``requests``' ``(connect, read)`` timeout, each cut to the time left (at least 1 ms)."""
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        left = max(self.left(), 0.001)
        return min(connect, left), min(read, left)


def read_body(response: requests.Response, deadline: Deadline) -> bytes:
    """The whole body of a ``stream=True`` response, read by the deadline.

    A timer shuts the connection's socket down when the deadline passes; the blocked read then
    ends at once and the socket is never reused.

    :param response: a response opened with ``stream=True`` (its body not read yet).
    :param deadline: the request's :class:`Deadline`.
    :return: the body, decoded from gzip/deflate as ``response.content`` would.
    :raises DeadlineExceeded: when the deadline passed before the body's end.
    :raises requests.RequestException: for other transport faults while reading.
    """
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        _shut_down(response)

    timer = threading.Timer(deadline.left(), cut_off)
    timer.daemon = True
    timer.start()
    try:
        content = response.content
    except requests.RequestException:
        response.close()  # the connection is not reused
        if cut.is_set():
            raise DeadlineExceeded(deadline.seconds) from None
        raise
    finally:
        timer.cancel()
    if cut.is_set() and not _complete(response, content):
        response.close()
        raise DeadlineExceeded(deadline.seconds)
    return content


def _complete(response: requests.Response, content: bytes) -> bool:
    """Whether ``content`` is the whole body (as its Content-Length says, when it says)."""
    length = response.headers.get("Content-Length")
    if length is None or response.headers.get("Content-Encoding"):
        return False  # cannot tell: a body cut at the deadline is not trusted
    return length.isdigit() and int(length) == len(content)


def _shut_down(response: requests.Response) -> None:
    """Shut down the socket a response reads from, waking a read blocked on it."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def check_deadline(value: object) -> float:
    """Return ``value`` as a positive float of seconds; raise :class:`ValueError` naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"request_deadline must be a positive number of seconds, got {value!r}")
    return float(value)
