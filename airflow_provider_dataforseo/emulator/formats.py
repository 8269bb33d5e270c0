"""Value spellings of the emulator's replies: the same values, written as other clients show them.

A test double's switch, not part of the real API: ``POST /_emulator/formats`` with
``{"lost_date": "fraction", "broken_backlinks": "string"}`` makes the next replies write
``lost_date`` as ``"2019-11-15 12:57:46.000 +00:00"`` and ``broken_backlinks`` as ``"3"``;
``GET`` reads the current spelling, ``DELETE`` restores the API's own. The VALUES never change,
so a client that reads them right sees no change when only the spelling does.

Spellings of ``lost_date`` (:data:`DATE_SPELLINGS`): ``api`` (``"2019-11-15 12:57:46 +00:00"``),
``fraction`` (``"... 12:57:46.000 +00:00"``), ``utc`` (``"... 12:57:46 UTC"``), ``iso``
(``"2019-11-15T12:57:46+00:00"``), ``zulu`` (``"2019-11-15T12:57:46Z"``); ``null_lost_date``:
``null`` (the API's) or ``empty`` (``""``). Spellings of ``broken_backlinks``
(:data:`COUNT_SPELLINGS`): ``number`` (the API's) or ``string``.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from fastapi import Request  # noqa: TC002  # FastAPI reads the route's annotations at run time
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from fastapi import FastAPI

#: Path of the control route (under the emulator's ``/_emulator`` control prefix).
FORMATS_PATH: Final = "/_emulator/formats"
#: ``lost_date`` spelling -> strftime format of the instant (UTC).
DATE_SPELLINGS: Final = {
    "api": "%Y-%m-%d %H:%M:%S +00:00",
    "fraction": "%Y-%m-%d %H:%M:%S.000 +00:00",
    "utc": "%Y-%m-%d %H:%M:%S UTC",
    "iso": "%Y-%m-%dT%H:%M:%S+00:00",
    "zulu": "%Y-%m-%dT%H:%M:%SZ",
}
#: ``broken_backlinks`` spellings.
COUNT_SPELLINGS: Final = ("number", "string")
#: Spellings of a ``lost_date`` that is null ("nothing lost").
NULL_SPELLINGS: Final = ("null", "empty")
#: The API's own spellings.
DEFAULT: Final = {"lost_date": "api", "broken_backlinks": "number", "null_lost_date": "null"}
_CHOICES: Final = {
    "lost_date": tuple(DATE_SPELLINGS),
    "broken_backlinks": COUNT_SPELLINGS,
    "null_lost_date": NULL_SPELLINGS,
}


def check_spellings(body: object) -> dict[str, str]:
    """The spellings a request asks for (unnamed keys keep the API's); :class:`ValueError` naming
    a bad key or value otherwise."""
    if not isinstance(body, dict):
        raise ValueError(f"body must be an object with keys {sorted(_CHOICES)}")
    chosen = dict(DEFAULT)
    for key, value in body.items():
        if key not in _CHOICES:
            raise ValueError(f"unknown key {key!r}; known: {sorted(_CHOICES)}")
        if value not in _CHOICES[key]:
            raise ValueError(f"{key} must be one of {list(_CHOICES[key])}, got {value!r}")
        chosen[key] = value
    return chosen


def respell(task: dict[str, Any], spellings: dict[str, str]) -> None:
    """Rewrite the items of one ``tasks[i]`` object in place with ``spellings``."""
    if spellings == DEFAULT:
        return
    for result in task.get("result") or ():
        for item in result.get("items") or ():
            lost = item.get("lost_date")
            if lost is None and "lost_date" in item and spellings["null_lost_date"] == "empty":
                item["lost_date"] = ""
            elif isinstance(lost, str):
                moment = datetime.strptime(lost, DATE_SPELLINGS["api"])
                item["lost_date"] = moment.strftime(DATE_SPELLINGS[spellings["lost_date"]])
            count = item.get("broken_backlinks")
            if isinstance(count, int) and spellings["broken_backlinks"] == "string":
                item["broken_backlinks"] = str(count)


class Spellings:
    """The current spellings, shared by all requests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = dict(DEFAULT)

    @property
    def current(self) -> dict[str, str]:
        """A copy of the current spellings."""
        with self._lock:
            return dict(self._current)

    def set(self, spellings: dict[str, str]) -> None:
        """Use ``spellings`` (as :func:`check_spellings` returns them) from now on."""
        with self._lock:
            self._current = dict(spellings)


def register_routes(app: FastAPI, spellings: Spellings) -> None:
    """Add ``GET``, ``POST`` and ``DELETE`` :data:`FORMATS_PATH` to ``app``."""

    @app.get(FORMATS_PATH)
    async def get_formats() -> JSONResponse:
        return JSONResponse(spellings.current)

    @app.post(FORMATS_PATH)
    async def set_formats(request: Request) -> JSONResponse:
        try:
            spellings.set(check_spellings(json.loads(await request.body())))
        except (UnicodeDecodeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(spellings.current)

    @app.delete(FORMATS_PATH)
    async def reset_formats() -> JSONResponse:
        spellings.set(dict(DEFAULT))
        return JSONResponse(spellings.current)
