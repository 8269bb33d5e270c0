"""The emulator's FastAPI app: the DataForSEO v3 envelope, auth, validation and balance.

Plays two endpoints faithfully enough that a client cannot tell it from the real API:

- ``POST /v3/backlinks/bulk_pages_summary/live``
  (``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/``);
- ``GET /v3/appendix/user_data`` (``https://docs.dataforseo.com/v3/appendix/user_data/``), free.

Everything else answers HTTP 404 with envelope ``40400 "Not Found."``, except the emulator's
own control API under ``/_emulator`` (for tests, not part of the real API): ``POST
/_emulator/faults`` queues scripted faults for the next API requests (see :func:`check_fault`),
``DELETE /_emulator/faults`` clears them, ``GET /_emulator/stats`` reports counters, and
``/_emulator/fault-injection`` sets seeded random faults for a share of requests (:mod:`.faults`),
``/_emulator/clock`` reads and sets the simulated date the items stand on (:mod:`.simclock`).
Status codes and messages follow ``https://docs.dataforseo.com/v3/appendix/errors/``: HTTP 200 for
almost everything, the outcome in ``status_code`` at the envelope AND the task level. Field errors are
task-level (envelope 20000, ``tasks_error`` 1, task ``40501``, ``result: null``, cost 0).

Target validation here is deliberately independent of
:func:`airflow_provider_dataforseo.targets.normalise_target`: the emulator plays the API, so it
must reject what a buggy client lets through. Only the main-domain count reuses
:func:`~airflow_provider_dataforseo.targets.main_domain` (the Public Suffix List, private section
included), the finest partition the API may apply.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import data, faults, formats, simclock
from airflow_provider_dataforseo.emulator.limits import AccountLimits
from airflow_provider_dataforseo.targets import main_domain, target_host

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_provider_dataforseo.emulator.server import EmulatorConfig

log = logging.getLogger(__name__)

#: ``version`` of every envelope (the real API sends e.g. ``"0.1.20221214"``).
API_VERSION: Final = "0.1.20261101"
#: Fields a bulk_pages_summary task may carry (endpoint doc, "Description of the fields").
KNOWN_FIELDS: Final = frozenset({"targets", "include_subdomains", "rank_scale", "tag"})
#: Path prefix of the emulator's own control API (not part of the real API; for tests).
CONTROL_PREFIX: Final = "/_emulator"
#: Expiry date reported by ``user_data`` (an active Backlinks subscription).
SUBSCRIPTION_EXPIRY: Final = "2027-12-31 00:00:00 +00:00"

MSG_OK: Final = "Ok."
MSG_UNAUTHORIZED: Final = "You are not authorized to access this resource."
MSG_NOT_FOUND: Final = "Not Found."
MSG_ONE_TASK: Final = "You can set only one task at a time."
MSG_EMPTY_POST: Final = "Empty POST data."
MSG_INVALID_POST: Final = "Invalid POST data."
MSG_INSUFFICIENT_FUNDS: Final = "Insufficient funds."
MSG_INTERNAL_ERROR: Final = "Internal Error."
MSG_TOO_MANY_TARGETS: Final = f"Invalid Field: 'targets'. Maximum {api.MAX_TARGETS_PER_REQUEST} targets."
MSG_TOO_MANY_DOMAINS: Final = (
    "Invalid Field: 'targets'. The URLs you set cannot belong to more than "
    f"{api.MAX_MAIN_DOMAINS_PER_REQUEST} different domains."
)

_BULK_PATH: Final = ["v3", "backlinks", "bulk_pages_summary", "live"]
_USER_DATA_PATH: Final = ["v3", "appendix", "user_data"]
_UNITS_PER_USD: Final = 100_000  # money is kept in 1e-5 USD, the price's precision
_LABEL_RE: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_SCHEME_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def invalid_field(name: str) -> str:
    """The 40501 message naming a field, e.g. ``"Invalid Field: 'tag'."``."""
    return f"Invalid Field: '{name}'."


def _usd(units: int) -> float | int:
    """Units of 1e-5 USD as the API prints money: ``0`` or a float rounded to 5 decimals."""
    return round(units / _UNITS_PER_USD, 5) if units else 0


def _usd_units(amount_usd: float) -> int:
    """USD -> units of 1e-5 USD."""
    return round(amount_usd * _UNITS_PER_USD)


def task_cost_units(n_items: int) -> int:
    """Price of one successful task in 1e-5 USD: $0.02 + $0.00003 per item (api constants)."""
    return _usd_units(api.COST_PER_REQUEST_USD) + n_items * _usd_units(api.COST_PER_ITEM_USD)


def _elapsed(start: float) -> str:
    """The API's ``time`` field: seconds since ``start``, e.g. ``"0.1566 sec."``."""
    return f"{time.perf_counter() - start:.4f} sec."


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def is_valid_host(host: str) -> bool:
    """Whether ``host`` is a domain name: LDH labels (any case), a dot, no IP, not a bare suffix."""
    if not host or len(host) > 253:
        return False
    labels = host.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return False
    if not all(_LABEL_RE.match(label) for label in labels):
        return False
    return main_domain(host.lower()) is not None


def _is_valid_page(target: str) -> bool:
    """``http(s)://`` + a valid host, optional port, path, query (``www.`` allowed)."""
    match = _SCHEME_RE.match(target)
    if not match or match.group(1).lower() not in ("http", "https"):
        return False
    try:
        parts = urlsplit(target)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        return False
    if "@" in parts.netloc:
        return False
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    return is_valid_host(host)


def is_valid_target(value: object) -> bool:
    """Whether the API would accept ``value`` as one target (endpoint doc, ``targets``).

    A domain or subdomain is given without scheme and path; a page as an absolute ``http://`` or
    ``https://`` URL. Not a string, whitespace anywhere, a scheme-less entry with a path, another
    scheme or an invalid host are refused.
    """
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        return False
    if "://" in value:
        return _is_valid_page(value)
    return is_valid_host(value)


def count_main_domains(targets: list[str]) -> int:
    """Distinct main (registrable) domains of valid targets (PSL, private section included)."""
    hosts = (target_host(target).lower() for target in targets)
    return len({main_domain(host) or host for host in hosts})


def _targets_error(targets: object) -> str | None:
    """The 40501 message for a bad ``targets`` field, or ``None`` when it is valid."""
    if not isinstance(targets, list) or not targets:
        return invalid_field("targets")
    if len(targets) > api.MAX_TARGETS_PER_REQUEST:
        return MSG_TOO_MANY_TARGETS
    if not all(is_valid_target(target) for target in targets):
        return invalid_field("targets")
    if count_main_domains(targets) > api.MAX_MAIN_DOMAINS_PER_REQUEST:
        return MSG_TOO_MANY_DOMAINS
    return None


def validate_task(task: Mapping[str, Any]) -> str | None:
    """Check one bulk_pages_summary task the way the API does.

    Strict on purpose (a client that passes here passes the real API): optional fields sent as
    ``null`` are refused too.

    :param task: the task object as posted.
    :return: the 40501 ``status_message`` of the first problem, or ``None`` when valid.
    """
    for name in task:
        if name not in KNOWN_FIELDS:
            return invalid_field(name)
    problem = _targets_error(task.get("targets"))
    if problem:
        return problem
    if "include_subdomains" in task and not isinstance(task["include_subdomains"], bool):
        return invalid_field("include_subdomains")
    if "rank_scale" in task and task["rank_scale"] not in api.RANK_SCALES:
        return invalid_field("rank_scale")
    tag = task.get("tag", "")
    if not isinstance(tag, str) or len(tag) > api.MAX_TAG_LENGTH:
        return invalid_field("tag")
    return None


def parse_body(raw: bytes) -> tuple[list[dict[str, Any]] | None, int, str]:
    """Read a POST body: a JSON array of task objects, or an object keyed by index.

    :param raw: the request body (UTF-8 JSON).
    :return: ``(tasks, status_code, status_message)``; ``tasks`` is ``None`` on an envelope-level
        error: 40502 for an empty body/array/object, 40503 for anything else than JSON tasks.
    """
    if not raw.strip():
        return None, api.EMPTY_POST_DATA, MSG_EMPTY_POST
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None, api.INVALID_POST_DATA, MSG_INVALID_POST
    if isinstance(body, dict):
        body = list(body.values())
    if not isinstance(body, list):
        return None, api.INVALID_POST_DATA, MSG_INVALID_POST
    if not body:
        return None, api.EMPTY_POST_DATA, MSG_EMPTY_POST
    if not all(isinstance(task, dict) for task in body):
        return None, api.INVALID_POST_DATA, MSG_INVALID_POST
    return body, api.OK, MSG_OK


# ---------------------------------------------------------------------------------------------
# State: balance, counters
# ---------------------------------------------------------------------------------------------


class EmulatorState:
    """Mutable account state shared by the requests of one app; thread-safe.

    :param balance_usd: starting balance, USD.
    :param seed: seed of the task ids (ids are derived from it and a counter).
    """

    def __init__(self, balance_usd: float, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.deposit_units = _usd_units(balance_usd)
        self.balance_units = self.deposit_units
        self._seed = seed
        self._counter = 0
        self._requests: dict[str, dict[str, int]] = {}  # bucket -> api -> count
        self._spent: dict[str, int] = {}  # bucket -> units
        self._api_requests = 0  # every request to an API endpoint, authorised or not
        self._paid_requests = 0  # bulk requests charged (a request is paid once it is charged)
        self._faults: list[dict[str, Any]] = []

    @property
    def balance_usd(self) -> float:
        """The current balance, USD (rounded to 1e-5)."""
        with self._lock:
            return round(self.balance_units / _UNITS_PER_USD, 5)

    def next_task_id(self) -> str:
        """A UUID-like task id, e.g. ``"73018362-1535-0001-0000-5d2b1f8e9c0a"`` (deterministic)."""
        with self._lock:
            self._counter += 1
            counter = self._counter
        digest = hashlib.sha256(f"{self._seed}:{counter}".encode()).hexdigest()
        return f"{int(digest[:8], 16) % 10**8:08d}-1535-{counter % 10**4:04d}-0000-{digest[8:20]}"

    def begin_api_request(self) -> dict[str, Any] | None:
        """Count one request to an API endpoint; return the next scripted fault, if any."""
        with self._lock:
            self._api_requests += 1
            return self._faults.pop(0) if self._faults else None

    def add_faults(self, faults: list[dict[str, Any]]) -> int:
        """Queue faults for the next API requests (one each, in order); return how many wait."""
        with self._lock:
            self._faults.extend(faults)
            return len(self._faults)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def stats(self) -> dict[str, Any]:
        """Counters for tests: ``api_requests``, ``paid_requests``, ``faults_pending``, ``tasks``,
        money in USD."""
        with self._lock:
            return {
                "api_requests": self._api_requests,
                "paid_requests": self._paid_requests,
                "faults_pending": len(self._faults),
                "tasks": self._counter,
                "balance_usd": _usd(self.balance_units),
                "spent_usd": _usd(self.deposit_units - self.balance_units),
            }

    def count_request(self, api_name: str) -> None:
        """Count one authorised request in the current day and minute (UTC)."""
        now = datetime.now(timezone.utc)
        with self._lock:
            for bucket in _buckets(now):
                counts = self._requests.setdefault(bucket, {})
                counts[api_name] = counts.get(api_name, 0) + 1

    def charge(self, units: int) -> bool:
        """Take ``units`` (1e-5 USD) from the balance; ``False`` (nothing taken) if it cannot."""
        now = datetime.now(timezone.utc)
        with self._lock:
            if units > self.balance_units:
                return False
            self.balance_units -= units
            self._paid_requests += 1
            for bucket in _buckets(now):
                self._spent[bucket] = self._spent.get(bucket, 0) + units
            return True

    def snapshot(self) -> tuple[int, int, dict[str, dict[str, int]], dict[str, int]]:
        """``(deposit_units, balance_units, requests per bucket, spent units per bucket)``."""
        with self._lock:
            requests = {bucket: dict(counts) for bucket, counts in self._requests.items()}
            return self.deposit_units, self.balance_units, requests, dict(self._spent)


def _buckets(now: datetime) -> tuple[str, str]:
    """The statistics buckets of a moment: its day and its minute (UTC)."""
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m-%d %H:%M:00 +00:00")


# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------


#: gzip level of large replies: the fastest (the emulator serves loopback, where bytes are free).
GZIP_LEVEL: Final = 1
_GZIP_MIN_BYTES: Final = 1024


def compress_reply(request: Request, reply: Response) -> Response:
    """``reply`` gzipped (level :data:`GZIP_LEVEL`) when the client accepts gzip and it is >= 1 KiB.

    Compressing in the endpoint, before the latency wait, keeps the work inside the request's
    response time; smaller and cut-off replies are left to the app's ``GZipMiddleware`` (which
    skips a reply that already has a ``Content-Encoding``).
    """
    body = reply.body
    if (
        isinstance(reply, faults.DisconnectMidBody)
        or "content-encoding" in reply.headers
        or len(body) < _GZIP_MIN_BYTES
        or "gzip" not in request.headers.get("accept-encoding", "")
    ):
        return reply
    headers = {k: v for k, v in reply.headers.items() if k != "content-length"}
    headers["content-encoding"] = "gzip"
    headers["vary"] = "Accept-Encoding"
    return Response(
        content=gzip.compress(bytes(body), compresslevel=GZIP_LEVEL),
        status_code=reply.status_code,
        headers=headers,
    )


def envelope(
    status_code: int,
    status_message: str,
    start: float,
    tasks: list[dict[str, Any]] | None = None,
    *,
    http_status: int = 200,
) -> JSONResponse:
    """The API's reply: ``version, status_code, status_message, time, cost, tasks_count,
    tasks_error, tasks`` (``cost`` = sum of the tasks' costs, USD)."""
    task_list = tasks or []
    cost_usd = round(sum(float(task["cost"]) for task in task_list), 5)
    body = {
        "version": API_VERSION,
        "status_code": status_code,
        "status_message": status_message,
        "time": _elapsed(start),
        "cost": cost_usd if cost_usd else 0,
        "tasks_count": len(task_list),
        "tasks_error": sum(1 for task in task_list if task["status_code"] != api.OK),
        "tasks": tasks,
    }
    return JSONResponse(body, status_code=http_status)


def _task(
    state: EmulatorState,
    status_code: int,
    status_message: str,
    start: float,
    *,
    path: list[str],
    data_echo: dict[str, Any],
    result: list[dict[str, Any]] | None = None,
    cost_units: int = 0,
) -> dict[str, Any]:
    """One ``tasks[i]`` object."""
    return {
        "id": state.next_task_id(),
        "status_code": status_code,
        "status_message": status_message,
        "time": _elapsed(start),
        "cost": _usd(cost_units),
        "result_count": len(result) if result is not None else 0,
        "path": path,
        "data": data_echo,
        "result": result,
    }


def _authorised(request: Request, config: EmulatorConfig) -> bool:
    """Whether the request carries HTTP Basic credentials equal to the configured ones."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    login, sep, password = decoded.partition(b":")
    if not sep:
        return False
    login_ok = secrets.compare_digest(login, config.login.encode("utf-8"))
    password_ok = secrets.compare_digest(password, config.password.encode("utf-8"))
    return login_ok and password_ok


def _unauthorised(start: float) -> JSONResponse:
    return envelope(api.UNAUTHORIZED, MSG_UNAUTHORIZED, start, http_status=401)


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


def _bulk_pages_summary(
    state: EmulatorState,
    task: dict[str, Any],
    start: float,
    injector: faults.FaultInjector | None = None,
    *,
    as_of: date | None = None,
) -> dict[str, Any]:
    """Run one validated-or-not bulk_pages_summary task and return its ``tasks[i]`` object.

    ``injector`` may declare some targets invalid (40501, see :mod:`.faults`). ``as_of`` is the
    simulated date the items stand on (``None``: the data's epoch; see :mod:`.simclock`).
    """
    echo = {"api": "backlinks", "function": "bulk_pages_summary", **task}
    problem = validate_task(task)
    if not problem and injector is not None and injector.rejected_in(task["targets"]):
        problem = invalid_field("targets")
    if problem:
        return _task(state, api.INVALID_FIELD, problem, start, path=_BULK_PATH, data_echo=echo)
    items = data.summary_items(
        task["targets"],
        include_subdomains=task.get("include_subdomains", True),
        rank_scale=task.get("rank_scale", "one_thousand"),
        as_of=as_of,
    )
    cost_units = task_cost_units(len(items))
    if not state.charge(cost_units):
        log.info("Emulator: balance too low for a task of %s items", len(items))
        return _task(
            state, api.INSUFFICIENT_FUNDS, MSG_INSUFFICIENT_FUNDS, start, path=_BULK_PATH, data_echo=echo
        )
    result = [{"total_count": len(items), "items_count": len(items), "items": items}]
    return _task(
        state, api.OK, MSG_OK, start, path=_BULK_PATH, data_echo=echo, result=result, cost_units=cost_units
    )


def _request_statistics(requests: Mapping[str, Mapping[str, int]], now: datetime) -> dict[str, Any]:
    """``rates.statistics``: requests of the current day and minute, in total and per API."""
    out: dict[str, Any] = {}
    for name, bucket in zip(("day", "minute"), _buckets(now), strict=True):
        counts = requests.get(bucket, {})
        out[name] = {"value": bucket, "total": sum(counts.values()), **counts}
    return out


def _money_statistics(spent: Mapping[str, int], now: datetime) -> dict[str, Any]:
    """``money.statistics``: USD spent in the current day and minute (all on backlinks)."""
    out: dict[str, Any] = {}
    for name, bucket in zip(("day", "minute"), _buckets(now), strict=True):
        amount = _usd(spent.get(bucket, 0))
        out[name] = {"value": bucket, "total": amount, "backlinks": amount}
    return out


def user_data_result(config: EmulatorConfig, state: EmulatorState) -> dict[str, Any]:
    """The one ``result[]`` object of ``GET /v3/appendix/user_data`` (money in USD).

    Limits reported: the API's default 2000 requests per minute (and 60 * 24 times that per
    day); no cost limits (``0``).

    :param config: the emulator's configuration (the login is reported, never the password).
    :param state: the account state.
    :return: ``login, timezone, rates, money, price, backlinks_subscription_expiry_date``.
    """
    now = datetime.now(timezone.utc)
    deposit, balance, requests, spent = state.snapshot()
    per_minute = api.DEFAULT_REQUESTS_PER_MINUTE
    per_day = per_minute * 60 * 24
    return {
        "login": config.login,
        "timezone": "UTC",
        "rates": {
            "limits": {
                "day": {"total": per_day, "backlinks": per_day, "appendix": per_day},
                "minute": {"total": per_minute, "backlinks": per_minute, "appendix": per_minute},
            },
            "statistics": _request_statistics(requests, now),
        },
        "money": {
            "total": _usd(deposit),
            "balance": _usd(balance),
            "limits": {"day": {"total": 0}, "minute": {"total": 0}},
            "statistics": _money_statistics(spent, now),
        },
        "price": {},
        "backlinks_subscription_expiry_date": SUBSCRIPTION_EXPIRY,
    }


# ---------------------------------------------------------------------------------------------
# Scripted faults (control API for tests)
# ---------------------------------------------------------------------------------------------

#: Keys a scripted fault may carry (see :func:`check_fault`).
FAULT_KEYS: Final = frozenset(
    {"task_status", "envelope_status", "http_status", "status_message", "body", "tasks_null"}
)
#: Messages of scripted faults by status code. Codes from the errors appendix
#: (``https://docs.dataforseo.com/v3/appendix/errors/``); where the exact wording is not public,
#: the message is the emulator's own.
FAULT_MESSAGES: Final[dict[int, str]] = {
    api.OK: MSG_OK,
    api.TOO_MANY_TASKS_IN_LIVE_POST: MSG_ONE_TASK,
    api.TOO_MANY_TASKS: "You can set no more than 100 tasks at a time.",
    api.UNAUTHORIZED: MSG_UNAUTHORIZED,
    api.ACCOUNT_NOT_VERIFIED: "Please verify your account before using the API.",
    api.PAYMENT_REQUIRED: "Payment Required.",
    api.ACCOUNT_PAUSED: "Your account has been paused.",
    api.RATE_LIMIT_PER_MINUTE: "The rate-limit per minute has been exceeded.",
    api.COST_LIMIT_EXCEEDED: "The cost limit has been exceeded.",
    api.ACCESS_DENIED: "Access denied. Activate the Backlinks API subscription to use this API.",
    api.TOO_MANY_SIMULTANEOUS_REQUESTS: "Too many simultaneous requests.",
    api.INSUFFICIENT_FUNDS: MSG_INSUFFICIENT_FUNDS,
    api.NOT_FOUND: MSG_NOT_FOUND,
    api.INVALID_FIELD: "Invalid Field.",
    api.INTERNAL_ERROR: MSG_INTERNAL_ERROR,
    api.TEMPORARILY_UNAVAILABLE: "Temporarily unavailable. Please try again later.",
    api.LIVE_TASK_TIMEOUT: "Timeout exceeded.",
}
_ENVELOPE_FOR_HTTP: Final = {401: api.UNAUTHORIZED, 402: api.PAYMENT_REQUIRED, 404: api.NOT_FOUND}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_fault(fault: object) -> str | None:
    """Why a scripted fault is malformed, or ``None`` when it is usable.

    A fault replaces the reply of one API request. Keys (all optional, at least one):
    ``task_status`` (int: one task with this status, ``result: null``, cost 0),
    ``envelope_status`` (int: the envelope's status; ``tasks: null`` unless ``task_status``),
    ``http_status`` (int, default 200), ``status_message`` (str, default from
    :data:`FAULT_MESSAGES`), ``body`` (str: sent as is, ``text/plain``: a body that is not JSON),
    ``tasks_null`` (bool: envelope 20000 with ``tasks: null``).
    """
    if not isinstance(fault, dict) or not fault:
        return "a fault is a non-empty JSON object"
    unknown = set(fault) - FAULT_KEYS
    if unknown:
        return f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}"
    for key in ("task_status", "envelope_status", "http_status"):
        if key in fault and not _is_int(fault[key]):
            return f"{key} must be an integer"
    if "http_status" in fault and not 200 <= fault["http_status"] <= 599:
        return "http_status must be 200-599"
    for key in ("status_message", "body"):
        if key in fault and not isinstance(fault[key], str):
            return f"{key} must be a string"
    if "tasks_null" in fault and not isinstance(fault["tasks_null"], bool):
        return "tasks_null must be a boolean"
    return None


def fault_reply(
    fault: Mapping[str, Any],
    state: EmulatorState,
    start: float,
    *,
    path: list[str],
    data_echo: dict[str, Any],
) -> Response:
    """The reply a scripted fault stands for (see :func:`check_fault`); nothing is charged."""
    http_status = int(fault.get("http_status", 200))
    if "body" in fault:
        return PlainTextResponse(str(fault["body"]), status_code=http_status)
    if "task_status" in fault:
        code = int(fault["task_status"])
        message = str(fault.get("status_message", FAULT_MESSAGES.get(code, f"Emulated fault {code}.")))
        task = _task(state, code, message, start, path=path, data_echo=data_echo)
        envelope_code = int(fault.get("envelope_status", api.OK))
        envelope_message = FAULT_MESSAGES.get(envelope_code, f"Emulated fault {envelope_code}.")
        return envelope(envelope_code, envelope_message, start, [task], http_status=http_status)
    default = _ENVELOPE_FOR_HTTP.get(http_status, api.INTERNAL_ERROR if http_status >= 500 else api.OK)
    code = int(fault.get("envelope_status", default))
    message = str(fault.get("status_message", FAULT_MESSAGES.get(code, f"Emulated fault {code}.")))
    return envelope(code, message, start, None, http_status=http_status)


def injected_error_reply(
    fault: faults.InjectedFault, state: EmulatorState, start: float, task: Mapping[str, Any]
) -> Response | None:
    """The reply of an injected fault that answers without running the task (nothing charged).

    :param fault: the fault chosen for the request (see :mod:`.faults`).
    :param state: the account state (task ids).
    :param start: when the request arrived (``time.perf_counter()``).
    :param task: the posted task (echoed in a failed task's ``data``).
    :return: the reply, or ``None`` for faults that need the computed reply (``hang``, ``slow``,
        ``disconnect``, ``truncated``, ``drop_items``).
    """
    if fault.kind == faults.HTTP_500:
        return envelope(api.INTERNAL_ERROR, MSG_INTERNAL_ERROR, start, http_status=500)
    if fault.kind in faults.ENVELOPE_STATUS:
        code = faults.ENVELOPE_STATUS[fault.kind]
        return envelope(code, FAULT_MESSAGES[code], start)
    if fault.kind == faults.TASK_ERROR:
        code = fault.task_status
        echo = {"api": "backlinks", "function": "bulk_pages_summary", **task}
        failed = _task(state, code, FAULT_MESSAGES[code], start, path=_BULK_PATH, data_echo=echo)
        return envelope(api.OK, MSG_OK, start, [failed])
    if fault.kind == faults.NOT_JSON:
        return faults.not_json_reply()
    return None


def _register_control_routes(app: FastAPI, state: EmulatorState, limits: AccountLimits) -> None:
    """``/_emulator/faults`` (POST to queue, DELETE to clear) and ``/_emulator/stats`` (GET: the
    account's counters and the limits' ``in_flight``, ``peak_in_flight`` and ``refused`` by code).

    Not part of the real API: a test double's control surface, unauthenticated, meant for a
    loopback-bound emulator. Faults apply to the next requests of the API endpoints, in order.
    """

    @app.post(f"{CONTROL_PREFIX}/faults")
    async def add_faults(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, ValueError):
            return JSONResponse({"error": 'body must be JSON: {"faults": [...]}'}, status_code=422)
        faults = body.get("faults") if isinstance(body, dict) else None
        if not isinstance(faults, list):
            return JSONResponse({"error": 'body must be {"faults": [...]}'}, status_code=422)
        for fault in faults:
            problem = check_fault(fault)
            if problem:
                return JSONResponse({"error": problem, "fault": fault}, status_code=422)
        return JSONResponse({"faults_pending": state.add_faults(faults)})

    @app.delete(f"{CONTROL_PREFIX}/faults")
    async def clear_faults() -> JSONResponse:
        state.clear_faults()
        return JSONResponse({"faults_pending": 0})

    @app.get(f"{CONTROL_PREFIX}/stats")
    async def stats() -> JSONResponse:
        return JSONResponse({**state.stats(), **limits.stats()})


def _default_config() -> EmulatorConfig:
    from airflow_provider_dataforseo.emulator.server import EmulatorConfig  # avoid an import cycle

    return EmulatorConfig()


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """Build the emulator app.

    :param config: credentials, starting balance (USD) and id seed; defaults to
        :class:`~airflow_provider_dataforseo.emulator.server.EmulatorConfig` ``()`` (login and
        password ``"emulator"``, 100 USD).
    :return: the FastAPI app; its account state is ``app.state.emulator`` (:class:`EmulatorState`).
    """
    cfg = config if config is not None else _default_config()
    state = EmulatorState(cfg.balance_usd, seed=cfg.seed)
    app = FastAPI(title="DataForSEO emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state
    app.state.config = cfg
    limits = AccountLimits(cfg.max_simultaneous, cfg.requests_per_minute)
    app.state.limits = limits
    injector = faults.FaultInjector(cfg.faults)
    app.state.faults = injector
    sim_clock = simclock.SimulatedClock(cfg.simulated_date)
    app.state.clock = sim_clock
    spellings = formats.Spellings()  # value spellings of the replies (tests of clients' parsing)
    app.add_middleware(GZipMiddleware, minimum_size=_GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)

    @app.post(api.BULK_PAGES_SUMMARY_PATH)
    async def bulk_pages_summary(request: Request) -> Response:
        start = time.perf_counter()
        fault = state.begin_api_request()
        raw = await request.body()
        tasks, code, message = parse_body(raw)
        if fault is not None:
            echo = {"api": "backlinks", "function": "bulk_pages_summary", **(tasks[0] if tasks else {})}
            return fault_reply(fault, state, start, path=_BULK_PATH, data_echo=echo)
        if not _authorised(request, cfg):
            return _unauthorised(start)
        state.count_request("backlinks")
        if tasks is None:
            return envelope(code, message, start)
        if len(tasks) > api.MAX_TASKS_PER_LIVE_POST:
            return envelope(api.TOO_MANY_TASKS_IN_LIVE_POST, MSG_ONE_TASK, start)
        injected = injector.choose(raw)
        if injected is not None:
            early = injected_error_reply(injected, state, start, tasks[0])
            if early is not None:
                return early
        refused = limits.enter()
        if refused is not None:
            return envelope(refused[0], refused[1], start)
        try:
            await injector.delay(injected)
            task = _bulk_pages_summary(state, tasks[0], start, injector, as_of=sim_clock.current)
            formats.respell(task, spellings.current)
            if injected is not None and injected.kind == faults.DROP_ITEMS:
                faults.drop_items(injected, task, injector.config.drop_share)
            if injector.config.respell_urls:
                faults.respell_items(task)
            reply = compress_reply(
                request, faults.mangle(injected, envelope(api.OK, MSG_OK, start, [task]), injector.config)
            )
            # the latency is the request's whole response time, the emulator's own work included
            # (the real API's servers do not share the client's CPUs)
            remaining = cfg.latency_seconds - (time.perf_counter() - start)
            if remaining > 0:
                await asyncio.sleep(remaining)
            return reply
        finally:
            limits.exit()

    @app.get(api.USER_DATA_PATH)
    async def user_data(request: Request) -> Response:
        start = time.perf_counter()
        fault = state.begin_api_request()
        if fault is not None:
            echo = {"api": "appendix", "function": "user_data"}
            return fault_reply(fault, state, start, path=_USER_DATA_PATH, data_echo=echo)
        if not _authorised(request, cfg):
            return _unauthorised(start)
        state.count_request("appendix")
        result = [user_data_result(cfg, state)]
        echo = {"api": "appendix", "function": "user_data"}
        task = _task(state, api.OK, MSG_OK, start, path=_USER_DATA_PATH, data_echo=echo, result=result)
        return envelope(api.OK, MSG_OK, start, [task])

    _register_control_routes(app, state, limits)
    faults.register_routes(app, injector)
    simclock.register_routes(app, sim_clock)
    formats.register_routes(app, spellings)

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # unknown path or wrong method: the API answers HTTP 404 / 40400
        return envelope(api.NOT_FOUND, MSG_NOT_FOUND, time.perf_counter(), http_status=404)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Emulator: internal error on %s", request.url.path)
        return envelope(api.INTERNAL_ERROR, MSG_INTERNAL_ERROR, time.perf_counter(), http_status=500)

    return app
