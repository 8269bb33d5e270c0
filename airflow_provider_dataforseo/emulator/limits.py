"""The account limits the real API enforces, for the emulator: simultaneous requests and per minute.

Facts (``https://docs.dataforseo.com/v3/appendix/errors/`` and the Backlinks API limits page):
at most 30 simultaneous requests per account for database-backed APIs such as Backlinks (above it:
40209), and 2000 requests per minute by default (above it: 40202). Both arrive inside an HTTP 200
envelope; the real API sends no rate-limit headers. The emulator enforces them only when asked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from airflow_provider_dataforseo import api

if TYPE_CHECKING:
    from collections.abc import Callable

MSG_TOO_MANY_SIMULTANEOUS = "Too many simultaneous requests."
MSG_RATE_LIMIT = "Rate limit exceeded: too many requests per minute."


class AccountLimits:
    """Admission control for API requests.

    :param max_simultaneous: requests allowed in flight at once (``None``: no limit).
    :param requests_per_minute: requests admitted in any 60 s window (``None``: no limit).
    :param clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        max_simultaneous: int | None = None,
        requests_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_simultaneous = max_simultaneous
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._admitted: deque[float] = deque()
        #: Highest number of requests seen in flight at once (for tests and benchmarks).
        self.peak_in_flight = 0
        #: Requests refused so far, by status code (40209, 40202).
        self.refused: dict[int, int] = {}

    def enter(self) -> tuple[int, str] | None:
        """Admit one request, or return the ``(status_code, status_message)`` refusing it.

        A refused request is not counted as in flight; an admitted one must call :meth:`exit`.
        """
        with self._lock:
            if self.max_simultaneous is not None and self._in_flight >= self.max_simultaneous:
                return self._refuse(api.TOO_MANY_SIMULTANEOUS_REQUESTS, MSG_TOO_MANY_SIMULTANEOUS)
            if self.requests_per_minute is not None:
                now = self._clock()
                while self._admitted and now - self._admitted[0] >= 60.0:
                    self._admitted.popleft()
                if len(self._admitted) >= self.requests_per_minute:
                    return self._refuse(api.RATE_LIMIT_PER_MINUTE, MSG_RATE_LIMIT)
                self._admitted.append(now)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            return None

    def exit(self) -> None:
        """Mark one admitted request as finished."""
        with self._lock:
            self._in_flight -= 1

    def _refuse(self, code: int, message: str) -> tuple[int, str]:
        """Count one refusal (the caller holds the lock) and return its reply."""
        self.refused[code] = self.refused.get(code, 0) + 1
        return code, message

    def stats(self) -> dict[str, object]:
        """``{"in_flight", "peak_in_flight", "refused": {"40209": n, "40202": n}}`` right now."""
        with self._lock:
            return {
                "in_flight": self._in_flight,
                "peak_in_flight": self.peak_in_flight,
                "refused": {str(code): count for code, count in sorted(self.refused.items())},
            }
