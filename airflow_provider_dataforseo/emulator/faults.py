"""Seeded random fault injection for the emulator: a share of requests answer with a fault.

Not part of the real API: a test double's switch, configured by CLI flags (:func:`add_cli_arguments`)
or at run time through the admin endpoint ``/_emulator/fault-injection`` (:func:`register_routes`):
``GET`` shows the configuration and what was injected, ``PUT`` replaces it (a JSON object, see
:meth:`FaultConfig.from_json`), ``DELETE`` switches injection off.

Kinds (:data:`FAULT_KINDS`), each given a share of the bulk_pages_summary requests (0-1, shares
summing to at most 1):

==================  =========================================================================
``http_500``        HTTP 500 with envelope 50000 (nothing charged)
``status_40202``    HTTP 200, envelope 40202 (per-minute limit), ``tasks: null``; likewise
``status_40209``    40209 (too many simultaneous requests), 50000 (internal error),
``status_50000``    50301 (temporarily unavailable) and 50401 (live task timed out)
``status_50301``
``status_50401``
``task_error``      envelope 20000 with one failed task (40202, 40209, 50000, 50301 or 50401)
``hang``            waits ``hang_seconds`` (past the client's read timeout), then answers
``slow``            waits ``slow_seconds`` (within it), then answers
``disconnect``      sends the headers and half the body, then closes the connection
``truncated``       a complete HTTP reply whose JSON body is cut in half
``not_json``        HTTP 200 with an HTML page instead of JSON
``drop_items``      drops a share (``drop_share``) of the items but keeps ``items_count``
``trickle``         sends the headers, then the body ``trickle_bytes`` at a time, one piece
                    every ``trickle_seconds`` (each read of the client inside its read timeout)
==================  =========================================================================

Replies the API computed (``hang``, ``slow``, ``disconnect``, ``truncated``, ``drop_items``,
``trickle``) are charged like a normal reply, as a real server that did the work would; the others
cost nothing.
Separately, ``reject_share`` / ``reject_targets`` make chosen targets invalid: every task holding
one fails with 40501 ``Invalid Field: 'targets'.`` (the same targets every time); and
``respell_urls`` makes every item echo its ``url`` in another spelling of the same target
(:func:`respell_url`), as an API that stores URLs its own way may.

Determinism: the fault of a request is drawn from SHA-256 of ``(seed, body, n)`` where ``n``
counts earlier requests with the same body, so a given seed and workload inject the same faults
whatever the order in which concurrent requests arrive. Rejected targets and dropped items are
drawn from the seed and the target.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_to_bytes

from fastapi import Request  # noqa: TC002  # FastAPI reads the annotation at run time
from fastapi.responses import JSONResponse, Response

from airflow_provider_dataforseo import api

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

HTTP_500: Final = "http_500"
STATUS_40202: Final = "status_40202"
STATUS_40209: Final = "status_40209"
STATUS_50000: Final = "status_50000"
STATUS_50301: Final = "status_50301"
STATUS_50401: Final = "status_50401"
TASK_ERROR: Final = "task_error"
HANG: Final = "hang"
SLOW: Final = "slow"
DISCONNECT: Final = "disconnect"
TRUNCATED: Final = "truncated"
NOT_JSON: Final = "not_json"
DROP_ITEMS: Final = "drop_items"
TRICKLE: Final = "trickle"

#: Every kind, in the order shares are laid out on [0, 1).
FAULT_KINDS: Final = (
    HTTP_500,
    STATUS_40202,
    STATUS_40209,
    STATUS_50000,
    STATUS_50301,
    STATUS_50401,
    TASK_ERROR,
    HANG,
    SLOW,
    DISCONNECT,
    TRUNCATED,
    NOT_JSON,
    DROP_ITEMS,
    TRICKLE,
)
#: Envelope status of each ``status_*`` kind (HTTP 200, ``tasks: null``).
ENVELOPE_STATUS: Final[dict[str, int]] = {
    STATUS_40202: api.RATE_LIMIT_PER_MINUTE,
    STATUS_40209: api.TOO_MANY_SIMULTANEOUS_REQUESTS,
    STATUS_50000: api.INTERNAL_ERROR,
    STATUS_50301: api.TEMPORARILY_UNAVAILABLE,
    STATUS_50401: api.LIVE_TASK_TIMEOUT,
}
#: Task-level codes a ``task_error`` fault picks from (all transient for a client).
TASK_ERROR_STATUSES: Final = (
    api.RATE_LIMIT_PER_MINUTE,
    api.TOO_MANY_SIMULTANEOUS_REQUESTS,
    api.INTERNAL_ERROR,
    api.TEMPORARILY_UNAVAILABLE,
    api.LIVE_TASK_TIMEOUT,
)
#: The HTML a ``not_json`` fault sends (what a proxy in front of an API typically sends).
NOT_JSON_BODY: Final = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>\n"
#: Path of the admin endpoint (not part of the real API).
ROUTE: Final = "/_emulator/fault-injection"

_ESCAPE_RE: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_NON_ASCII_ESCAPES_RE: Final = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")

_CONFIG_KEYS: Final = frozenset(
    {
        "rates",
        "seed",
        "hang_seconds",
        "slow_seconds",
        "drop_share",
        "reject_share",
        "reject_targets",
        "trickle_seconds",
        "trickle_bytes",
        "respell_urls",
    }
)


class FaultConfigError(ValueError):
    """A fault-injection setting is malformed; the message names it and the accepted values."""


def _share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise FaultConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise FaultConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class FaultConfig:
    """What to inject.

    :param rates: kind (see :data:`FAULT_KINDS`) -> share of bulk_pages_summary requests, 0-1;
        the shares sum to at most 1.
    :param seed: seed of every random choice.
    :param hang_seconds: how long a ``hang`` fault waits before answering, seconds (make it longer
        than the client's read timeout).
    :param slow_seconds: how long a ``slow`` fault waits before answering, seconds.
    :param drop_share: share of a reply's items a ``drop_items`` fault removes (at least one).
    :param reject_share: share of all targets the emulator treats as invalid (40501).
    :param reject_targets: targets the emulator treats as invalid (40501), as sent.
    :param trickle_seconds: pause between two pieces of a ``trickle`` reply, seconds.
    :param trickle_bytes: size of each piece of a ``trickle`` reply, bytes (>= 1).
    :param respell_urls: every item's ``url`` echoes its target in another spelling
        (:func:`respell_url`).
    :raises FaultConfigError: naming the bad setting.
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    hang_seconds: float = 30.0
    slow_seconds: float = 1.0
    drop_share: float = 0.1
    reject_share: float = 0.0
    reject_targets: frozenset[str] = frozenset()
    trickle_seconds: float = 0.5
    trickle_bytes: int = 1
    respell_urls: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rates, Mapping):
            raise FaultConfigError(f"rates must map fault kinds to shares, got {self.rates!r:.80}")
        rates: dict[str, float] = {}
        for kind, share in self.rates.items():
            if kind not in FAULT_KINDS:
                raise FaultConfigError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
            rates[kind] = _share(f"rates[{kind!r}]", share)
        if sum(rates.values()) > 1 + 1e-9:
            raise FaultConfigError(f"fault shares sum to {sum(rates.values()):g}, more than 1")
        object.__setattr__(self, "rates", {k: v for k, v in rates.items() if v > 0})
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FaultConfigError(f"seed must be an integer, got {self.seed!r}")
        _seconds("hang_seconds", self.hang_seconds)
        _seconds("slow_seconds", self.slow_seconds)
        _share("drop_share", self.drop_share)
        _share("reject_share", self.reject_share)
        _seconds("trickle_seconds", self.trickle_seconds)
        if (
            isinstance(self.trickle_bytes, bool)
            or not isinstance(self.trickle_bytes, int)
            or self.trickle_bytes < 1
        ):
            raise FaultConfigError(
                f"trickle_bytes must be an integer of at least 1, got {self.trickle_bytes!r}"
            )
        targets = self.reject_targets
        if isinstance(targets, str) or not all(isinstance(t, str) for t in targets):
            raise FaultConfigError(f"reject_targets must be a list of strings, got {targets!r:.80}")
        object.__setattr__(self, "reject_targets", frozenset(targets))
        if not isinstance(self.respell_urls, bool):
            raise FaultConfigError(f"respell_urls must be true or false, got {self.respell_urls!r:.80}")

    @property
    def active(self) -> bool:
        """Whether anything is injected at all."""
        return bool(self.rates) or self.reject_share > 0 or bool(self.reject_targets) or self.respell_urls

    @classmethod
    def mix(cls, rate: float, **settings: Any) -> FaultConfig:
        """Every kind at once, ``rate`` in total (each kind gets ``rate / len(FAULT_KINDS)``).

        :param rate: share of requests that get some fault, 0-1.
        :param settings: the other fields (``seed``, ``hang_seconds``, ...).
        """
        _share("rate", rate)
        return cls(rates=dict.fromkeys(FAULT_KINDS, rate / len(FAULT_KINDS)), **settings)

    @classmethod
    def from_json(cls, obj: object) -> FaultConfig:
        """Build from the admin endpoint's JSON, e.g. ``{"rates": {"http_500": 0.2}, "seed": 7}``.

        Keys (all optional): ``rates`` (object kind -> share), ``seed`` (int), ``hang_seconds``,
        ``slow_seconds``, ``trickle_seconds`` (seconds), ``trickle_bytes`` (int), ``drop_share``,
        ``reject_share`` (0-1), ``reject_targets`` (list of strings), ``respell_urls`` (bool).

        :raises FaultConfigError: for anything else, naming the key.
        """
        if not isinstance(obj, Mapping):
            raise FaultConfigError("the fault configuration is a JSON object")
        unknown = sorted(str(key) for key in set(obj) - _CONFIG_KEYS)
        if unknown:
            raise FaultConfigError(f"unknown keys {unknown}; known: {sorted(_CONFIG_KEYS)}")
        settings = dict(obj)
        targets = settings.get("reject_targets", [])
        if not isinstance(targets, list):
            raise FaultConfigError(f"reject_targets must be a list of strings, got {targets!r:.80}")
        settings["reject_targets"] = targets
        if "rates" in settings and not isinstance(settings["rates"], Mapping):
            raise FaultConfigError(f"rates must be an object of kind -> share, got {settings['rates']!r:.80}")
        try:
            return cls(**settings)
        except TypeError as exc:  # pragma: no cover - keys are checked above
            raise FaultConfigError(str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON (what :meth:`from_json` reads; ``respell_urls`` only when set)."""
        respell = {"respell_urls": True} if self.respell_urls else {}
        return {
            "rates": dict(self.rates),
            "seed": self.seed,
            "hang_seconds": self.hang_seconds,
            "slow_seconds": self.slow_seconds,
            "drop_share": self.drop_share,
            "reject_share": self.reject_share,
            "reject_targets": sorted(self.reject_targets),
            "trickle_seconds": self.trickle_seconds,
            "trickle_bytes": self.trickle_bytes,
            **respell,
        }


def _unit(*parts: object) -> float:
    """A number in [0, 1) drawn from SHA-256 of ``parts`` (stable across processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class InjectedFault:
    """The fault chosen for one request.

    :ivar kind: one of :data:`FAULT_KINDS`.
    :ivar token: identifies the request (seed, body digest, occurrence) for derived choices.
    """

    kind: str
    token: str

    def unit(self, *parts: object) -> float:
        """A stable number in [0, 1) for a choice made while applying this fault."""
        return _unit(self.token, *parts)

    @property
    def task_status(self) -> int:
        """The failed task's status of a ``task_error`` fault."""
        return TASK_ERROR_STATUSES[int(self.unit("task_status") * len(TASK_ERROR_STATUSES))]


class FaultInjector:
    """Chooses faults for requests under a :class:`FaultConfig`; thread-safe.

    :param config: what to inject; ``None`` injects nothing.
    """

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config if config is not None else FaultConfig()
        self._seen: dict[str, int] = {}
        self._injected: dict[str, int] = {}
        self._rejections = 0
        self._delaying = 0

    @property
    def config(self) -> FaultConfig:
        """The configuration in force."""
        with self._lock:
            return self._config

    def configure(self, config: FaultConfig | None) -> None:
        """Replace the configuration and reset the counters (``None`` switches injection off)."""
        with self._lock:
            self._config = config if config is not None else FaultConfig()
            self._seen.clear()
            self._injected.clear()
            self._rejections = 0

    def choose(self, body: bytes) -> InjectedFault | None:
        """The fault of a request with this body, or ``None`` (see the module doc).

        :param body: the raw request body.
        """
        with self._lock:
            config = self._config
            if not config.rates:
                return None
            digest = hashlib.sha256(body).hexdigest()
            occurrence = self._seen.get(digest, 0)
            self._seen[digest] = occurrence + 1
            token = f"{config.seed}:{digest}:{occurrence}"
            point = _unit(token, "kind")
            edge = 0.0
            for kind in FAULT_KINDS:
                edge += config.rates.get(kind, 0.0)
                if point < edge:
                    self._injected[kind] = self._injected.get(kind, 0) + 1
                    return InjectedFault(kind, token)
            return None

    def rejects(self, target: object) -> bool:
        """Whether the emulator treats ``target`` as invalid (40501), always the same answer."""
        config = self.config
        if not isinstance(target, str):
            return False
        if target in config.reject_targets:
            return True
        return config.reject_share > 0 and _unit(config.seed, "reject", target) < config.reject_share

    def rejected_in(self, targets: Iterable[object]) -> list[str]:
        """The targets of a task the emulator treats as invalid; counts a rejection if any."""
        config = self.config
        if not config.reject_targets and config.reject_share <= 0:
            return []  # nothing is ever refused: no per-target work
        found = [t for t in targets if isinstance(t, str) and self.rejects(t)]
        if found:
            with self._lock:
                self._rejections += 1
        return found

    async def delay(self, fault: InjectedFault | None) -> None:
        """Wait as a ``hang`` or ``slow`` fault says (no-op for other faults)."""
        if fault is None or fault.kind not in (HANG, SLOW):
            return
        config = self.config
        with self._lock:
            self._delaying += 1
        try:
            await asyncio.sleep(config.hang_seconds if fault.kind == HANG else config.slow_seconds)
        finally:
            with self._lock:
                self._delaying -= 1

    def stats(self) -> dict[str, Any]:
        """``{"config", "injected": {kind: n}, "requests_seen", "rejected_tasks", "delaying"}``.

        ``delaying`` counts requests a ``hang`` or ``slow`` fault holds right now (they are charged
        when they answer, even if the client has gone).
        """
        with self._lock:
            return {
                "config": self._config.to_json(),
                "injected": dict(self._injected),
                "requests_seen": sum(self._seen.values()),
                "rejected_tasks": self._rejections,
                "delaying": self._delaying,
            }


def drop_items(fault: InjectedFault, task: dict[str, Any], share: float) -> None:
    """Remove a share of a task's items in place, leaving ``items_count`` and ``total_count``.

    At least one item goes when the task has any; which ones is drawn from the fault and the
    item's ``url``.
    """
    for result in task.get("result") or ():
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list) or not items:
            continue
        keep = [item for i, item in enumerate(items) if fault.unit("drop", i) >= share]
        if len(keep) == len(items):
            keep.pop(int(fault.unit("drop-one") * len(keep)))
        result["items"] = keep


def respell_url(url: str) -> str:
    """Another spelling of a normalised target, meaning the same: what an API may echo as ``url``.

    A page gets an upper-case scheme and host, its default port, its non-ASCII escapes decoded
    (``%C3%A9`` -> ``é``), its other escapes in lower case and ``~`` escaped (``%7e``); a domain
    is written in upper case.

    :param url: a target as sent, e.g. ``"https://example.com/caf%C3%A9/~u"``.
    :return: e.g. ``"HTTPS://EXAMPLE.COM:443/café/%7eu"``; never ``url`` itself.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.upper() if url.upper() != url else f"{url}."
    host, slash, tail = rest.partition("/")
    port = "" if ":" in host else (":443" if scheme.lower() == "https" else ":80")
    tail = _NON_ASCII_ESCAPES_RE.sub(_decoded, tail)
    tail = _ESCAPE_RE.sub(lambda m: m.group(0).lower(), tail).replace("~", "%7e")
    return f"{scheme.upper()}://{host.upper()}{port}{slash}{tail}"


def _decoded(match: re.Match[str]) -> str:
    """A run of escapes of UTF-8 bytes as its characters (kept as it is when not valid UTF-8)."""
    try:
        return unquote_to_bytes(match.group(0)).decode("utf-8")
    except UnicodeDecodeError:
        return match.group(0)


def respell_items(task: dict[str, Any]) -> None:
    """Rewrite each item's ``url`` of a task in place with :func:`respell_url`."""
    for result in task.get("result") or ():
        for item in (result.get("items") if isinstance(result, dict) else None) or ():
            if isinstance(item, dict) and isinstance(item.get("url"), str):
                item["url"] = respell_url(item["url"])


def mangle(fault: InjectedFault | None, reply: Response, config: FaultConfig | None = None) -> Response:
    """Turn a computed reply into a ``truncated``, ``disconnect`` or ``trickle`` one (others pass through).

    :param config: gives a ``trickle`` reply its pace (default: :class:`FaultConfig` ``()``).
    """
    if fault is None or fault.kind not in (TRUNCATED, DISCONNECT, TRICKLE):
        return reply
    body = bytes(reply.body)
    if fault.kind == TRUNCATED:
        return Response(content=body[: max(1, len(body) // 2)], media_type="application/json")
    if fault.kind == TRICKLE:
        pace = config if config is not None else FaultConfig()
        return TrickleBody(body, seconds=pace.trickle_seconds, piece=pace.trickle_bytes)
    return DisconnectMidBody(body)


def not_json_reply() -> Response:
    """HTTP 200 with an HTML page: a body that is not JSON."""
    return Response(content=NOT_JSON_BODY, media_type="text/html; charset=utf-8")


class _QuietInjectedDisconnects(logging.Filter):
    """Drops uvicorn's error line about a reply cut short (it is what the fault is for)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


_QUIET = _QuietInjectedDisconnects()


class DisconnectMidBody(Response):
    """Announces the whole body, sends half of it, then returns: the server closes the connection."""

    def __init__(self, body: bytes) -> None:
        super().__init__(content=body, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        uvicorn_log = logging.getLogger("uvicorn.error")
        if _QUIET not in uvicorn_log.filters:
            uvicorn_log.addFilter(_QUIET)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        half = bytes(self.body)[: max(1, len(self.body) // 2)]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        # returning without the last body message: uvicorn closes the connection mid-body


class TrickleBody(Response):
    """Sends the headers at once, then the body ``piece`` bytes at a time, ``seconds`` apart.

    Each piece arrives well inside a client's read timeout, so only a deadline on the whole
    exchange ends the request. The reply is sent uncompressed (``Content-Encoding: identity``) so
    that every piece reaches the client as it is sent; the trickle stops when the client leaves.
    """

    def __init__(self, body: bytes, *, seconds: float, piece: int) -> None:
        super().__init__(
            content=body, media_type="application/json", headers={"content-encoding": "identity"}
        )
        self.seconds = seconds
        self.piece = piece

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        gone = asyncio.Event()

        async def watch() -> None:  # the client closing the connection ends the trickle
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        try:
            body = bytes(self.body)
            for start in range(0, len(body), self.piece):
                await send(
                    {
                        "type": "http.response.body",
                        "body": body[start : start + self.piece],
                        "more_body": True,
                    }
                )
                try:
                    await asyncio.wait_for(gone.wait(), self.seconds)
                    return
                except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                    pass
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


# ---------------------------------------------------------------------------------------------
# Admin endpoint and CLI
# ---------------------------------------------------------------------------------------------


def register_routes(app: FastAPI, injector: FaultInjector) -> None:
    """``GET`` / ``PUT`` / ``DELETE`` :data:`ROUTE` (unauthenticated; for a loopback emulator)."""

    @app.get(ROUTE)
    async def show() -> JSONResponse:
        return JSONResponse(injector.stats())

    @app.put(ROUTE)
    async def configure(request: Request) -> JSONResponse:
        try:
            config = FaultConfig.from_json(json.loads(await request.body()))
        except (UnicodeDecodeError, ValueError) as exc:  # FaultConfigError is a ValueError
            message = str(exc) if isinstance(exc, FaultConfigError) else "the body must be a JSON object"
            return JSONResponse({"error": message}, status_code=422)
        injector.configure(config)
        return JSONResponse(injector.stats())

    @app.delete(ROUTE)
    async def switch_off() -> JSONResponse:
        injector.configure(None)
        return JSONResponse(injector.stats())


def _kind_share(text: str) -> tuple[str, float]:
    """argparse type of ``--fault KIND=SHARE``."""
    kind, sep, share = text.partition("=")
    if not sep or kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"expected KIND=SHARE with KIND one of {', '.join(FAULT_KINDS)}")
    try:
        return kind, _share(kind, float(share))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fault-injection flags to the emulator's CLI (see :func:`config_from_args`)."""
    group = parser.add_argument_group("fault injection (a test double's switch, not the real API)")
    group.add_argument(
        "--fault",
        type=_kind_share,
        action="append",
        default=[],
        metavar="KIND=SHARE",
        help=f"answer SHARE (0-1) of bulk requests with KIND; repeatable. KIND: {', '.join(FAULT_KINDS)}",
    )
    group.add_argument(
        "--fault-mix",
        type=float,
        default=None,
        metavar="SHARE",
        help="every fault kind at once, SHARE in total",
    )
    group.add_argument("--fault-seed", type=int, default=0, help="seed of the fault choices (default: 0)")
    group.add_argument(
        "--hang-seconds", type=float, default=30.0, help="how long a 'hang' fault waits (default: 30)"
    )
    group.add_argument(
        "--slow-seconds", type=float, default=1.0, help="how long a 'slow' fault waits (default: 1)"
    )
    group.add_argument(
        "--trickle-seconds",
        type=float,
        default=0.5,
        help="pause between two pieces of a 'trickle' reply (default: 0.5)",
    )
    group.add_argument(
        "--trickle-bytes", type=int, default=1, help="bytes in each piece of a 'trickle' reply (default: 1)"
    )
    group.add_argument(
        "--drop-share",
        type=float,
        default=0.1,
        help="share of items a 'drop_items' fault drops (default: 0.1)",
    )
    group.add_argument(
        "--reject-share", type=float, default=0.0, help="share of targets answered with 40501 (default: 0)"
    )
    group.add_argument(
        "--reject-target", action="append", default=[], metavar="TARGET", help="a target answered with 40501"
    )
    group.add_argument(
        "--respell-urls", action="store_true", help="items echo their url in another spelling of the target"
    )


def config_from_args(args: argparse.Namespace) -> FaultConfig | None:
    """The :class:`FaultConfig` the CLI flags describe, or ``None`` when they inject nothing.

    :raises FaultConfigError: naming a bad flag value.
    """
    rates: dict[str, float] = {}
    if args.fault_mix is not None:
        rates = dict(FaultConfig.mix(args.fault_mix).rates)
    for kind, share in args.fault:
        rates[kind] = share
    config = FaultConfig(
        rates=rates,
        seed=args.fault_seed,
        hang_seconds=args.hang_seconds,
        slow_seconds=args.slow_seconds,
        drop_share=args.drop_share,
        reject_share=args.reject_share,
        reject_targets=frozenset(args.reject_target),
        trickle_seconds=args.trickle_seconds,
        trickle_bytes=args.trickle_bytes,
        respell_urls=args.respell_urls,
    )
    return config if config.active else None


def describe(config: FaultConfig | None) -> str:
    """One line for the CLI: what is injected (``"no faults"`` when nothing)."""
    if config is None or not config.active:
        return "no faults"
    parts: Sequence[str] = [f"{kind} {share:.1%}" for kind, share in config.rates.items()]
    if config.reject_share or config.reject_targets:
        parts = [
            *parts,
            f"40501 for {config.reject_share:.1%} of targets + {len(config.reject_targets)} named",
        ]
    if config.respell_urls:
        parts = [*parts, "item urls respelled"]
    return f"faults (seed {config.seed}): " + ", ".join(parts)
