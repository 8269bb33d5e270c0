"""Client-side limits of one task: requests in flight, requests per minute, and money.

Pure module: no Airflow import, no network; every class is thread-safe and meant to be shared by
all threads of a task.

Facts relied on (``https://docs.dataforseo.com/v3/appendix/errors/``, the Backlinks API limits
page and ``https://dataforseo.com/apis/backlinks-api`` for prices; constants in :mod:`.api`): an
account may have at most 30 requests in flight (40209 above it) and 2000 requests per minute by
default (40202 above it), and DataForSEO advises a steady rate rather than bursts. A request costs
0.02 USD plus 0.00003 USD per returned item; a task the API refuses costs nothing.

- :class:`RequestLimiter` keeps requests in flight at most ``max_in_flight`` and delays a start
  when the last 60 s already hold ``requests_per_minute`` starts, or the last 10 s a sixth of
  them (a sliding log: short runs go at full concurrency, long runs at a steady rate).
  Limits across tasks and workers are Airflow's job (a pool), see the README.
- :class:`CostBudget` refuses, before a request is sent, to let the spend plus what requests in
  flight may still cost go over ``max_cost_usd``; :func:`estimate_cost_usd` is the up-front bound.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from airflow_provider_dataforseo import api

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: Default per-minute budget of one task: 90 % of the API's default 2000 requests per minute,
#: leaving room for other clients of the same account.
DEFAULT_REQUESTS_PER_MINUTE: Final = 1800
#: Money is counted in units of 1e-5 USD, the precision of DataForSEO's prices.
_UNITS_PER_USD: Final = 100_000


def _usd_units(amount_usd: float) -> int:
    return round(amount_usd * _UNITS_PER_USD)


def request_cost_bound_usd(n_targets: int) -> float:
    """The most one request of ``n_targets`` targets can cost, USD: $0.02 + $0.00003 per target.

    :param n_targets: targets in the request (each gives at most one item).
    """
    return (_usd_units(api.COST_PER_REQUEST_USD) + n_targets * _usd_units(api.COST_PER_ITEM_USD)) / (
        _UNITS_PER_USD
    )


def estimate_cost_usd(n_requests: int, n_targets: int) -> float:
    """Upper bound of a run's cost, USD: ``requests x $0.02 + targets x $0.00003``.

    It is an upper bound because a target yields at most one item (unknown targets yield none).

    :param n_requests: planned requests.
    :param n_targets: distinct targets in them.
    """
    units = n_requests * _usd_units(api.COST_PER_REQUEST_USD) + n_targets * _usd_units(api.COST_PER_ITEM_USD)
    return units / _UNITS_PER_USD


class RequestLimiter:
    """At most ``max_in_flight`` requests at once, ``requests_per_minute`` starts in any 60 s window.

    Use one instance for every request of a task (the hook wraps each HTTP attempt, retries
    included, in :meth:`request`)::

        limiter = RequestLimiter(max_in_flight=5, requests_per_minute=1800)
        with limiter.request():
            session.post(...)

    A caller first waits for a free slot, then (holding it) for its start time: the earliest time
    at which no 60 s window holds more than ``requests_per_minute`` starts and no 10 s window more
    than ``burst`` (a sliding log of start times). So a run of up to ``burst`` requests is held
    back only by ``max_in_flight`` (100 requests at 30 in flight and 0.3 s each take 1.2 s, well
    inside the minute's budget), while a longer run settles at ``requests_per_minute / 60`` starts
    a second, the steady rate DataForSEO advises, instead of spending a minute's budget in its
    first seconds.

    :param max_in_flight: requests allowed in flight at once, 1 or more (the API allows 30 per
        account).
    :param requests_per_minute: starts allowed in any 60 s window, 1 or more; ``None`` for no
        per-minute limit. Default :data:`DEFAULT_REQUESTS_PER_MINUTE` (below the API's 2000).
    :param burst: starts allowed in any 10 s window, 1 or more; default a sixth of
        ``requests_per_minute`` (rounded up), at most ``requests_per_minute``. Ignored without a
        per-minute limit.
    :param clock: monotonic clock in seconds (injectable for tests).
    :param sleep: sleeps the given seconds (injectable for tests); default :meth:`pause`, which
        :meth:`close` cuts short.
    :raises ValueError: for a limit below 1 or of the wrong type, naming it.
    """

    #: The long window, seconds (the API counts requests per minute).
    WINDOW_SECONDS: Final = 60.0
    #: The short window that spreads a minute's budget, seconds.
    BURST_WINDOW_SECONDS: Final = 10.0

    def __init__(
        self,
        *,
        max_in_flight: int = api.MAX_SIMULTANEOUS_REQUESTS,
        requests_per_minute: int | None = DEFAULT_REQUESTS_PER_MINUTE,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        _check_count("max_in_flight", max_in_flight)
        if requests_per_minute is not None:
            _check_count("requests_per_minute", requests_per_minute)
        if burst is not None:
            _check_count("burst", burst)
        self.max_in_flight = max_in_flight
        self.requests_per_minute = requests_per_minute
        if requests_per_minute is None:
            self.burst = burst if burst is not None else max_in_flight
        else:
            default = -(-requests_per_minute // 6)
            self.burst = min(burst if burst is not None else default, requests_per_minute)
        self._clock = clock
        self._sleep = sleep if sleep is not None else self.pause
        self._stopped = threading.Event()  # set by close(): wakes every pause()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._starts: deque[float] = deque()  # start times (some maybe still ahead) of the last 60 s
        #: Highest number of requests seen in flight at once.
        self.peak_in_flight = 0
        #: Requests started so far.
        self.started = 0

    @property
    def in_flight(self) -> int:
        """Requests in flight now."""
        with self._cond:
            return self._in_flight

    def acquire(self) -> float:
        """Wait for a free slot and for this request's start time; the caller must :meth:`release`.

        :return: seconds waited for the start time (0 when the rate allowed it at once).
        :raises RequestsStoppedError: when the limiter is (or gets) closed: nothing may be sent.
        """
        with self._cond:
            while self._in_flight >= self.max_in_flight and not self._closed:
                self._cond.wait()
            if self._closed:
                raise RequestsStoppedError()
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            delay = 0.0
            if self.requests_per_minute is not None:
                now = self._clock()
                start = now
                starts = self._starts
                while starts and starts[0] <= now - self.WINDOW_SECONDS:
                    starts.popleft()
                if len(starts) >= self.requests_per_minute:
                    start = max(start, starts[-self.requests_per_minute] + self.WINDOW_SECONDS)
                if len(starts) >= self.burst:
                    start = max(start, starts[-self.burst] + self.BURST_WINDOW_SECONDS)
                starts.append(start)
                delay = start - now
            self.started += 1
        if delay > 0:
            try:
                self._sleep(delay)
            except BaseException:
                self.release()
                raise
            if self._closed:  # closed while this request waited for its start time
                self.release()
                raise RequestsStoppedError()
        return delay

    def close(self) -> None:
        """Let no further request start: every later :meth:`acquire` (a retry too) raises.

        Requests already started are not affected. Called when the task is interrupted (e.g. by
        ``execution_timeout``) so that no thread sends, and pays for, anything more.
        """
        with self._cond:
            self._closed = True
            self._stopped.set()
            self._cond.notify_all()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (a retry's backoff, a start time), or less when :meth:`close` is called.

        Every thread of a task waits here rather than in :func:`time.sleep`, so that an interrupted
        task's threads wake at once: their next :meth:`acquire` raises :class:`RequestsStoppedError`.

        :param seconds: how long to wait, seconds.
        :return: whether the limiter was closed meanwhile.
        """
        return self._stopped.wait(max(0.0, seconds))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def release(self) -> None:
        """Free the slot taken by :meth:`acquire`."""
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("RequestLimiter.release() without a matching acquire()")
            self._in_flight -= 1
            self._cond.notify()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Hold a slot (and respect the rate) for the duration of the ``with`` block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def __repr__(self) -> str:
        return (
            f"RequestLimiter(max_in_flight={self.max_in_flight}, "
            f"requests_per_minute={self.requests_per_minute}, burst={self.burst})"
        )


class RequestsStoppedError(RuntimeError):
    """The limiter was closed (the task is being interrupted): the request was not sent."""

    def __init__(self) -> None:
        super().__init__("the task was interrupted: no further request is sent")


def _check_count(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")


class CostLimitExceededError(RuntimeError):
    """Sending the next request could take the spend over ``max_cost_usd``; it was not sent.

    :param max_cost_usd: the limit the user set, USD.
    :param spent_usd: what replies reported as charged so far, USD.
    :param reserved_usd: the most that requests in flight may still cost, USD.
    :param needed_usd: the most the refused request could have cost, USD.
    :param what: the refused request, e.g. ``"a request of 1000 targets"``.
    :param unconfirmed_usd: the most that earlier tries may have paid beyond ``spent_usd``, USD
        (requests whose reply was never read, at their upper bound, or never stored), counted
        against the limit.
    """

    def __init__(
        self,
        *,
        max_cost_usd: float,
        spent_usd: float,
        reserved_usd: float,
        needed_usd: float,
        what: str,
        unconfirmed_usd: float = 0.0,
    ) -> None:
        self.max_cost_usd = max_cost_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.needed_usd = needed_usd
        self.what = what
        self.unconfirmed_usd = unconfirmed_usd
        total = spent_usd + unconfirmed_usd + reserved_usd + needed_usd
        spent = f"Spent so far: {spent_usd:.5f} USD reported by replies"
        if unconfirmed_usd > 0:
            spent += (
                f"; up to {spent_usd + unconfirmed_usd:.5f} USD counting what earlier tries may have "
                "paid for requests whose reply was never read or never stored"
            )
        super().__init__(
            f"Cost guard: {what} (up to {needed_usd:.5f} USD) could take the spend to "
            f"{total:.5f} USD, over max_cost_usd={max_cost_usd:.5f}; it was not sent. {spent}. "
            "Raise max_cost_usd to go on: finished chunks are kept and not paid for again."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_cost_error,
            (
                self.max_cost_usd,
                self.spent_usd,
                self.reserved_usd,
                self.needed_usd,
                self.what,
                self.unconfirmed_usd,
            ),
        )


def _rebuild_cost_error(
    max_cost_usd: float,
    spent_usd: float,
    reserved_usd: float,
    needed_usd: float,
    what: str,
    unconfirmed_usd: float = 0.0,
) -> CostLimitExceededError:
    return CostLimitExceededError(
        max_cost_usd=max_cost_usd,
        spent_usd=spent_usd,
        reserved_usd=reserved_usd,
        needed_usd=needed_usd,
        what=what,
        unconfirmed_usd=unconfirmed_usd,
    )


@dataclass(frozen=True)
class Reservation:
    """Money set aside for one request in flight (see :meth:`CostBudget.reserve`).

    :ivar units: the request's upper bound in 1e-5 USD.
    """

    units: int


class CostBudget:
    """Money of one task: stops a request before it could take the spend over ``max_cost_usd``.

    Before each request the caller reserves the most it can cost
    (:func:`request_cost_bound_usd`); when the reply arrives the reservation is replaced by the
    reported cost (:meth:`settle`), or dropped when nothing was charged (:meth:`release`).
    Amounts are kept in 1e-5 USD, the price's precision, so sums are exact.

    The plan comes first: :meth:`set_aside` keeps the planned requests' estimate out of reach of
    other requests (those isolating refused targets, follow-ups), which may only spend what the
    limit leaves beside it; a planned request draws its reservation from that share.

    :param max_cost_usd: the limit, USD (> 0), or ``None`` for no limit (the spend is still
        counted).
    :param spent_usd: already spent (e.g. by finished chunks of an earlier try), USD.
    :param unconfirmed_usd: what earlier tries may have spent beyond ``spent_usd`` (requests
        whose reply was never read, at their upper bound), USD: counted against the limit, and
        named apart in :class:`CostLimitExceededError`.
    :raises ValueError: for a limit that is not a positive finite number.
    """

    def __init__(
        self, max_cost_usd: float | None = None, *, spent_usd: float = 0.0, unconfirmed_usd: float = 0.0
    ) -> None:
        self.max_cost_usd = check_max_cost(max_cost_usd)
        self._max_units = None if self.max_cost_usd is None else _usd_units(self.max_cost_usd)
        self._lock = threading.Lock()
        self._spent = _usd_units(spent_usd)
        self._unconfirmed = max(0, _usd_units(unconfirmed_usd))
        self._reserved = 0
        self._planned = 0  # set aside for planned requests not sent yet

    @property
    def spent_usd(self) -> float:
        """What replies reported as charged, USD."""
        with self._lock:
            return self._spent / _UNITS_PER_USD

    @property
    def unconfirmed_usd(self) -> float:
        """What earlier tries may have spent beyond :attr:`spent_usd`, USD."""
        return self._unconfirmed / _UNITS_PER_USD

    @property
    def reserved_usd(self) -> float:
        """The most requests in flight may still cost, USD."""
        with self._lock:
            return self._reserved / _UNITS_PER_USD

    def would_exceed(self, amount_usd: float) -> bool:
        """Whether spending ``amount_usd`` more (beyond the spend and reservations) passes the limit."""
        with self._lock:
            return self._max_units is not None and (
                self._spent + self._unconfirmed + self._reserved + _usd_units(amount_usd) > self._max_units
            )

    def set_aside(self, planned_usd: float) -> None:
        """Keep ``planned_usd`` (the plan's estimate, USD) for the planned requests only."""
        with self._lock:
            self._planned = _usd_units(planned_usd)

    @property
    def planned_usd(self) -> float:
        """What is still set aside for planned requests not sent yet, USD."""
        with self._lock:
            return self._planned / _UNITS_PER_USD

    def reserve(self, upper_usd: float, what: str, *, planned: bool = False) -> Reservation:
        """Set aside the most a request can cost, or refuse it.

        :param upper_usd: the request's upper bound, USD (:func:`request_cost_bound_usd`).
        :param what: the request, for the error message (e.g. ``"a request of 12 targets"``).
        :param planned: a planned request: its reservation is drawn from what :meth:`set_aside`
            kept; any other request must fit beside what is still kept there.
        :return: the :class:`Reservation` to :meth:`settle` or :meth:`release`.
        :raises CostLimitExceededError: when spend + reservations + the planned share still kept +
            ``upper_usd`` > ``max_cost_usd``.
        """
        units = _usd_units(upper_usd)
        with self._lock:
            drawn = min(units, self._planned) if planned else 0
            kept = self._planned - drawn
            spent = self._spent + self._unconfirmed
            if self._max_units is not None and spent + self._reserved + kept + units > self._max_units:
                raise CostLimitExceededError(
                    max_cost_usd=self._max_units / _UNITS_PER_USD,
                    spent_usd=self._spent / _UNITS_PER_USD,
                    reserved_usd=(self._reserved + kept) / _UNITS_PER_USD,
                    needed_usd=units / _UNITS_PER_USD,
                    what=what,
                    unconfirmed_usd=self._unconfirmed / _UNITS_PER_USD,
                )
            self._planned = kept  # a planned request's share is used up, whatever its outcome
            self._reserved += units
        return Reservation(units)

    def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace a reservation by what the reply says was charged, USD."""
        with self._lock:
            self._reserved -= reservation.units
            self._spent += _usd_units(actual_usd)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose request charged nothing (refused, failed, never sent)."""
        with self._lock:
            self._reserved -= reservation.units

    def add_spent(self, amount_usd: float) -> None:
        """Count money spent outside a reservation, USD."""
        with self._lock:
            self._spent += _usd_units(amount_usd)


def check_max_cost(value: object) -> float | None:
    """Return ``value`` as a positive float, or ``None``; raise :class:`ValueError` naming it otherwise.

    :param value: ``None`` or a positive finite number of USD.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"max_cost_usd must be a positive number of USD or None, got {value!r}")
    return float(value)
