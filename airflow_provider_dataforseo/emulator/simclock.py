"""The emulator's simulated date: a thread-safe holder and its control routes.

``GET /_emulator/clock`` answers ``{"date": "YYYY-MM-DD", "epoch": "2026-11-01"}``;
``POST /_emulator/clock`` with ``{"date": "YYYY-MM-DD"}`` or ``{"advance_days": n}`` moves it (HTTP
422 naming the bad value otherwise). Not part of the real API: a test double's control surface,
under the same ``/_emulator`` prefix as the scripted faults. How items evolve with the date is
:mod:`.clock`'s business (pure); this module only keeps the date.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from fastapi import Request  # noqa: TC002  # FastAPI reads the route's annotations at run time
from fastapi.responses import JSONResponse

from airflow_provider_dataforseo.emulator import clock
from airflow_provider_dataforseo.emulator.data import DATA_AS_OF

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

#: Path of the clock's control route (under the emulator's ``/_emulator`` control prefix).
CLOCK_PATH: Final = "/_emulator/clock"
#: The earliest simulated date: the day the synthetic data are drawn on.
EPOCH: Final = DATA_AS_OF.date()
_USAGE: Final = 'body must be {"date": "YYYY-MM-DD"} or {"advance_days": <int>}'


def parse_date(text: str) -> date:
    """A simulated date from ``YYYY-MM-DD`` within the accepted range.

    :param text: e.g. ``"2026-11-05"``.
    :return: the date.
    :raises ValueError: naming the value when it is malformed or outside the simulated range
        (2026-11-01 to about ten years later).
    """
    try:
        value = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"date must be YYYY-MM-DD, got {text!r}") from None
    problem = clock.check_date(value, EPOCH)
    if problem:
        raise ValueError(problem)
    return value


class SimulatedClock:
    """The emulator's simulated date (a UTC day), shared by all requests; thread-safe.

    Items are answered as they stand on this date (:func:`.data.summary_item` with ``as_of``):
    advancing it makes a deterministic share of pages gain or lose backlinks, get a
    ``lost_date``, recover, or see ``broken_backlinks`` change. Same date, same answers.

    :param start: the first simulated date; ``None`` for the epoch (2026-11-01).
    :raises ValueError: when ``start`` is outside the simulated range.
    """

    def __init__(self, start: date | None = None) -> None:
        value = EPOCH if start is None else start
        problem = clock.check_date(value, EPOCH)
        if problem:
            raise ValueError(problem)
        self._lock = threading.Lock()
        self._date = value

    @property
    def current(self) -> date:
        """The current simulated date."""
        with self._lock:
            return self._date

    def set(self, value: date) -> None:
        """Move to ``value`` (forwards or backwards, within the simulated range).

        :raises ValueError: naming the date when it is outside the range.
        """
        problem = clock.check_date(value, EPOCH)
        if problem:
            raise ValueError(problem)
        with self._lock:
            self._date = value

    def as_json(self) -> dict[str, Any]:
        """``{"date": "YYYY-MM-DD", "epoch": "2026-11-01"}``."""
        return {"date": self.current.isoformat(), "epoch": EPOCH.isoformat()}


def _target_date(body: object, current: date) -> date:
    """The date a POST body asks for; :class:`ValueError` with the reason otherwise."""
    if not isinstance(body, dict) or len(body) != 1 or not {"date", "advance_days"} & set(body):
        raise ValueError(_USAGE)
    if "date" in body:
        if not isinstance(body["date"], str):
            raise ValueError(f"date must be a string YYYY-MM-DD, got {body['date']!r}")
        return parse_date(body["date"])
    days = body["advance_days"]
    if not isinstance(days, int) or isinstance(days, bool):
        raise ValueError(f"advance_days must be an integer, got {days!r}")
    try:
        return date.fromordinal(current.toordinal() + days)
    except (ValueError, OverflowError):
        raise ValueError(f"advance_days {days} leaves the simulated range") from None


def register_routes(app: FastAPI, sim_clock: SimulatedClock) -> None:
    """Add ``GET`` and ``POST`` :data:`CLOCK_PATH` to ``app``."""

    @app.get(CLOCK_PATH)
    async def get_clock() -> JSONResponse:
        return JSONResponse(sim_clock.as_json())

    @app.post(CLOCK_PATH)
    async def set_clock(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, ValueError):
            return JSONResponse({"error": _USAGE}, status_code=422)
        try:
            sim_clock.set(_target_date(body, sim_clock.current))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        log.info("Emulator: simulated date is now %s", sim_clock.current.isoformat())
        return JSONResponse(sim_clock.as_json())
