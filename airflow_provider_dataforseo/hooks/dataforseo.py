"""DataForSeoHook: an Airflow connection -> an HTTP session that posts DataForSEO tasks."""

from __future__ import annotations

import base64
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import requests
import tenacity
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException
from requests.adapters import HTTPAdapter

from airflow_provider_dataforseo import __version__, api
from airflow_provider_dataforseo.chunks import lower_bound
from airflow_provider_dataforseo.deadline import (
    DEFAULT_REQUEST_DEADLINE_SECONDS,
    Deadline,
    DeadlineExceeded,
    check_deadline,
    read_body,
)
from airflow_provider_dataforseo.exceptions import (
    DataForSeoAuthenticationError,
    DataForSeoError,
    DataForSeoInvalidRequestError,
    DataForSeoServerError,
    InvalidTargetsError,
    error_for_status,
)
from airflow_provider_dataforseo.ratelimit import RequestLimiter
from airflow_provider_dataforseo.responses import TaskResult, decode_reply, parse_task_response
from airflow_provider_dataforseo.targets import count_main_domains

log = logging.getLogger(__name__)

#: Connect timeout, seconds.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Read timeout, seconds: longer than the API's 120 s live-task limit (after which it answers 50401).
DEFAULT_READ_TIMEOUT = 180.0


#: Attempts at most when nothing answers at the Base URL (connection refused, host name unknown):
#: one more try covers a server that is restarting; five tries over minutes only delay the hint.
UNREACHABLE_ATTEMPTS: Final = 2
#: Host names that mean "this machine": a refused connection there is most likely the emulator.
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"})


class DataForSeoUnreachableError(DataForSeoServerError):
    """Nothing answers at the connection's Base URL: connection refused or a host name that does
    not resolve. Retryable, but at most :data:`UNREACHABLE_ATTEMPTS` attempts in all."""


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DataForSeoError) and exc.retryable


def _retry_wanted(state: tenacity.RetryCallState) -> bool:
    """tenacity's retry test: retryable errors, an unreachable server only :data:`UNREACHABLE_ATTEMPTS`."""
    exc = state.outcome.exception() if state.outcome is not None else None
    if exc is None or not _is_retryable(exc):
        return False
    return not isinstance(exc, DataForSeoUnreachableError) or state.attempt_number < UNREACHABLE_ATTEMPTS


class DataForSeoHook(BaseHook):
    """Talk to the DataForSEO v3 API with the credentials of an Airflow connection.

    Connection fields: *login* and *password* are the API login and API password (HTTP Basic
    auth, from https://app.dataforseo.com/api-access). *host* is optional: a full URL
    (``http://127.0.0.1:8765`` for the emulator) or a bare host name meaning https; when it is
    empty, extra ``sandbox: true`` selects ``https://sandbox.dataforseo.com``, else
    ``https://api.dataforseo.com``.

    Every call checks the envelope's and the task's ``status_code``. Transient failures (HTTP 5xx,
    connection errors, read timeouts, unreadable replies, 40202, 40209, 5xxxx) are retried inside
    the call with exponential backoff and jitter; the others raise at once. A refused connection or
    a host name that does not resolve is tried :data:`UNREACHABLE_ATTEMPTS` times, TLS spoken to a
    plain-HTTP server (the emulator) once, each with a message naming the URL and the likely fix
    (:func:`transport_error`). A Base URL ending in ``/v3`` is used without it.

    :param dataforseo_conn_id: the Airflow connection id.
    :param timeout: ``(connect, read)`` timeouts in seconds (a list of two is accepted, as JSON or YAML
        ``hook_params`` give it), or one number for both; read should exceed the API's 120 s limit.
        Each bounds one socket operation (connecting, one read).
    :param request_deadline: the most one HTTP attempt may take in all, seconds: connecting,
        sending, the headers and the WHOLE body (default 300, past the API's 120 s live-task
        limit). A server that trickles its reply is cut off there, and the attempt is retried as a
        transient fault (:mod:`~airflow_provider_dataforseo.deadline`).
    :param max_attempts: attempts per request, the first included (>= 1).
    :param retry_wait_min: smallest backoff between attempts, seconds.
    :param retry_wait_max: largest backoff between attempts, seconds.
    :param max_retry_seconds: stop retrying once this many seconds have passed since the first try.
    :param pool_maxsize: HTTP connections kept open (>= the requests in flight).
    :param limiter: caps requests in flight and per minute for every thread using this hook; each
        HTTP attempt (retries included) takes a slot. Default: a
        :class:`~airflow_provider_dataforseo.ratelimit.RequestLimiter` of 30 in flight (the API's
        limit) and 1800 per minute (below the API's default 2000).
    :raises ValueError: for a bad ``timeout``, ``request_deadline`` or ``max_attempts`` (naming the
        value).
    """

    conn_name_attr = "dataforseo_conn_id"
    default_conn_name = "dataforseo_default"
    conn_type = "dataforseo"
    hook_name = "DataForSEO"

    def __init__(
        self,
        dataforseo_conn_id: str = default_conn_name,
        *,
        timeout: float | Sequence[float] = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT),
        request_deadline: float = DEFAULT_REQUEST_DEADLINE_SECONDS,
        max_attempts: int = 5,
        retry_wait_min: float = 1.0,
        retry_wait_max: float = 60.0,
        max_retry_seconds: float = 600.0,
        pool_maxsize: int = api.MAX_SIMULTANEOUS_REQUESTS,
        limiter: RequestLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.dataforseo_conn_id = dataforseo_conn_id
        self.timeout = check_timeout(timeout)
        self.request_deadline = check_deadline(request_deadline)
        self.max_attempts = max_attempts
        self.retry_wait_min = retry_wait_min
        self.retry_wait_max = retry_wait_max
        self.max_retry_seconds = max_retry_seconds
        self.pool_maxsize = pool_maxsize
        self.limiter = limiter if limiter is not None else RequestLimiter()
        self._session_lock = threading.Lock()

    # -- connection --------------------------------------------------------------------------

    @cached_property
    def connection(self) -> Any:
        """The Airflow connection (looked up once)."""
        return self.get_connection(self.dataforseo_conn_id)

    @cached_property
    def base_url(self) -> str:
        """The API root without a trailing slash, e.g. ``https://api.dataforseo.com``.

        The connection's Port is used when the host names none. A Base URL ending in ``/v3`` (as
        many clients write it) is used without it: the endpoint paths start with ``/v3/`` (logged
        at INFO).

        :raises DataForSeoInvalidRequestError: (not retried, nothing sent) when the host's port and the
            Port field differ, or the extra ``sandbox`` is not a true/false value (see :func:`as_sandbox`).
        """
        conn = self.connection
        extra = conn.extra_dejson or {}
        value = extra.get("sandbox")
        if value is None:  # unset (or null from the form): the older prefixed key may say it
            value = extra.get("extra__dataforseo__sandbox")
        sandbox = as_sandbox(value)
        host = (conn.host or "").strip().rstrip("/")
        if host:
            if "://" not in host:
                host = f"https://{host}"
            return _without_api_version(_with_port(host, conn.port))
        return api.SANDBOX_URL if sandbox else api.API_URL

    def get_conn(self) -> requests.Session:
        """The one ``requests.Session`` of this hook (created on first use, then reused).

        :raises ValueError: when the connection has no login or password.
        """
        with self._session_lock:
            return self._session

    @cached_property
    def _session(self) -> requests.Session:
        conn = self.connection
        if not conn.login or not conn.password:
            raise ValueError(
                f"Connection {self.dataforseo_conn_id!r} needs the API login and API password "
                "(https://app.dataforseo.com/api-access)."
            )
        _mask(conn.password)
        auth = BasicAuthUtf8.of(conn.login, conn.password, conn_id=self.dataforseo_conn_id)
        _mask(auth.token)
        session = requests.Session()
        session.auth = auth
        session.headers.update(
            {
                "User-Agent": user_agent(),
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.pool_maxsize, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    # -- requests ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        endpoint: str,
        body: object | None,
        raw_items: bool = False,
        on_slot: Callable[[], object] | None = None,
    ) -> TaskResult:
        """One HTTP exchange, no retry: transport faults become :class:`DataForSeoServerError`.

        The limiter's request slot is held from just before the request leaves until its body has
        been read; the reply is decoded after the slot is freed, so that a request waiting for a
        slot leaves meanwhile.

        :param on_slot: called once the slot is held, just before the request leaves (the
            operator's write-ahead spend ledger records the attempt there); what it raises is
            raised, nothing sent.
        """
        url = f"{self.base_url}{endpoint}"
        try:
            session = self.get_conn()
            with self.limiter.request():
                if on_slot is not None:
                    on_slot()
                deadline = Deadline(self.request_deadline)
                response = session.request(
                    method, url, json=body, timeout=deadline.timeout(self.timeout), stream=True
                )
                content = read_body(response, deadline)
        except DeadlineExceeded as exc:
            raise DataForSeoServerError(
                f"{self.base_url}: {exc} (hook param request_deadline)",
                endpoint=endpoint,
            ) from None
        except requests.Timeout as exc:
            raise DataForSeoServerError(
                f"{self.base_url} timed out ({type(exc).__name__}) after {self.timeout} s", endpoint=endpoint
            ) from None
        except (
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
        ):
            raise DataForSeoInvalidRequestError(
                f"the connection's Base URL {self.base_url!r} is not a usable http(s) URL: "
                "use e.g. https://api.dataforseo.com or http://127.0.0.1:8765",
                endpoint=endpoint,
            ) from None
        except requests.RequestException as exc:
            raise transport_error(exc, self.base_url, endpoint=endpoint) from None
        try:
            payload = decode_reply(content, raw_items=raw_items)
        except ValueError:  # msgspec.DecodeError is a ValueError
            raise error_for_status(
                None,
                f"HTTP {response.status_code} with a body that is not JSON",
                endpoint=endpoint,
                http_status=response.status_code if response.status_code >= 400 else None,
            ) from None
        return parse_task_response(payload, endpoint=endpoint, http_status=response.status_code)

    def _call(
        self, method: str, endpoint: str, body: object | None = None, *, raw_items: bool = False
    ) -> TaskResult:
        retrying = tenacity.Retrying(
            retry=_retry_wanted,
            wait=tenacity.wait_random_exponential(multiplier=self.retry_wait_min, max=self.retry_wait_max),
            stop=tenacity.stop_after_attempt(self.max_attempts)
            | tenacity.stop_after_delay(self.max_retry_seconds),
            before_sleep=_log_retry,
            sleep=self._backoff,
            reraise=True,
        )
        result: TaskResult = retrying(self._send, method, endpoint, body, raw_items)
        return result

    def _backoff(self, seconds: float) -> None:
        """Wait between attempts; an interrupted task's limiter cuts the wait short."""
        self.limiter.pause(seconds)

    def post_task(self, endpoint: str, task: Mapping[str, Any], *, raw_items: bool = False) -> TaskResult:
        """Post ONE task to a live endpoint and return its checked result.

        Live endpoints accept one task per POST (more answer 40000); the body is the JSON array
        ``[task]`` as in the endpoint docs.

        :param endpoint: API path, e.g. ``/v3/backlinks/bulk_pages_summary/live``.
        :param task: the task's fields.
        :param raw_items: keep each item as the API's JSON text (``TaskResult.raw_items``) instead
            of a dict: faster, and what a rows file should hold (see
            :func:`~airflow_provider_dataforseo.responses.decode_reply`).
        :return: the task's :class:`~airflow_provider_dataforseo.responses.TaskResult`.
        :raises DataForSeoError: the matching subclass, after retries for transient kinds.
        """
        return self._call("POST", endpoint, [dict(task)], raw_items=raw_items)

    def bulk_pages_summary(
        self,
        targets: Sequence[str],
        *,
        include_subdomains: bool = True,
        rank_scale: str | None = None,
        tag: str | None = None,
        raw_items: bool = False,
    ) -> TaskResult:
        """Call ``POST /v3/backlinks/bulk_pages_summary/live`` for one valid chunk.

        Cost: 0.02 USD per request plus 0.00003 USD per returned item (DataForSEO pricing).

        :param targets: 1 to 1000 NORMALISED targets from at most 100 main domains (see
            :func:`airflow_provider_dataforseo.chunks.plan_chunks`).
        :param include_subdomains: count backlinks of the targets' subdomains too.
        :param rank_scale: ``"one_thousand"`` (API default, 0-1000) or ``"one_hundred"`` (0-100).
        :param tag: up to 255 characters, echoed back in the task's ``data``.
        :param raw_items: keep items as the API's JSON text (``result.raw_items``), see
            :meth:`post_task`.
        :return: the task's result; ``items`` are matched to targets by
            :func:`airflow_provider_dataforseo.responses.match_items`.
        :raises InvalidTargetsError: if the chunk breaks the endpoint's limits (nothing is sent).
        :raises ValueError: for a bad ``rank_scale`` or ``tag`` (nothing is sent).
        :raises DataForSeoError: as :meth:`post_task`.
        """
        check_chunk(targets)
        task: dict[str, Any] = {"targets": list(targets), "include_subdomains": bool(include_subdomains)}
        if rank_scale is not None:
            task["rank_scale"] = check_rank_scale(rank_scale)
        if tag is not None:
            task["tag"] = check_tag(tag)
        return self.post_task(api.BULK_PAGES_SUMMARY_PATH, task, raw_items=raw_items)

    def user_data(self) -> dict[str, Any]:
        """``GET /v3/appendix/user_data``: the account's login, balance (USD) and limits. Free.

        :raises DataForSeoError: as :meth:`post_task`.
        """
        result = self._call("GET", api.USER_DATA_PATH)
        if not result.results:
            raise DataForSeoServerError("user_data task holds no result", endpoint=api.USER_DATA_PATH)
        return result.results[0]

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials with the free ``user_data`` call; never raises.

        The result is also logged (INFO), because ``airflow connections test`` prints only
        "Connection success!" and not the message.

        :return: ``(True, "<login>, balance <x> USD")`` or ``(False, <reason>)``.
        """
        try:
            account = self.user_data()
        except Exception as exc:
            return False, str(exc)
        money = account.get("money") if isinstance(account.get("money"), Mapping) else {}
        balance = money.get("balance") if isinstance(money, Mapping) else None
        message = f"{account.get('login', '?')}, balance {balance} USD"
        log.info("DataForSEO connection %r works: %s", self.dataforseo_conn_id, message)
        return True, message

    def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        session = self.__dict__.pop("_session", None)
        if session is not None:
            session.close()


class BasicAuthUtf8(requests.auth.AuthBase):
    """HTTP Basic auth with the login and password encoded as UTF-8 (RFC 7617 ``charset="UTF-8"``).

    ``requests`` encodes Basic credentials as Latin-1 and raises a ``UnicodeEncodeError`` that
    holds the password for any other character (``€``, ``ł``, ``中``). DataForSEO's docs give no
    charset (their examples run ``base64`` over the shell's, i.e. UTF-8, bytes); UTF-8 is the
    assumption made here, and the emulator decodes it the same way.

    The token is kept only in the header it builds; ``repr`` shows neither it nor the password.

    :param token: the base64 of ``login:password`` in UTF-8 (build it with :meth:`of`).
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self._header = f"Basic {token}"

    @classmethod
    def of(cls, login: str, password: str, *, conn_id: str) -> BasicAuthUtf8:
        """Build the auth of a connection's login and password.

        :raises DataForSeoAuthenticationError: (not retried; no secret in it, nor in its chain)
            when they cannot be encoded as UTF-8 (a lone surrogate, as a bad file decoding leaves).
        """
        try:
            raw: bytes | None = f"{login}:{password}".encode()
        except UnicodeEncodeError:
            raw = None
        if raw is None:  # raised outside the except block: no __context__ holding the password
            raise DataForSeoAuthenticationError(
                f"the login or password of connection {conn_id!r} holds characters that cannot be "
                "encoded as UTF-8 (e.g. a lone surrogate): enter them again (nothing was sent)"
            )
        return cls(base64.b64encode(raw).decode("ascii"))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BasicAuthUtf8(<hidden>)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BasicAuthUtf8) and other._header == self._header

    __hash__ = None  # type: ignore[assignment]


def check_chunk(targets: Sequence[str]) -> None:
    """Refuse a chunk that breaks the endpoint's limits (endpoint doc, field ``targets``).

    :param targets: normalised targets.
    :raises InvalidTargetsError: empty, over 1000 targets, or over 100 main domains.
    """
    domains = count_main_domains(targets)
    if not targets or lower_bound(len(targets), domains) > 1:
        raise InvalidTargetsError(
            [
                (
                    0,
                    f"{len(targets)} targets from {domains} main domains",
                    f"one request takes 1 to {api.MAX_TARGETS_PER_REQUEST} targets from at most "
                    f"{api.MAX_MAIN_DOMAINS_PER_REQUEST} main domains: plan chunks with plan_chunks()",
                )
            ]
        )


def check_rank_scale(rank_scale: str) -> str:
    """Return ``rank_scale`` if the API knows it; raise :class:`ValueError` naming it otherwise."""
    if rank_scale not in api.RANK_SCALES:
        raise ValueError(f"rank_scale must be one of {api.RANK_SCALES}, got {rank_scale!r}")
    return rank_scale


def check_tag(tag: str) -> str:
    """Return ``tag`` if it fits the API's 255 characters; raise :class:`ValueError` otherwise."""
    if not isinstance(tag, str) or len(tag) > api.MAX_TAG_LENGTH:
        raise ValueError(
            f"tag must be a string of at most {api.MAX_TAG_LENGTH} characters, got "
            + (f"{len(tag)} characters: {tag[:40]!r}..." if isinstance(tag, str) else repr(tag))
        )
    return tag


#: What ``hook_params`` of the operator and the sensor may hold (``DataForSeoHook`` keywords).
HOOK_PARAMS: Final = (
    "timeout",
    "request_deadline",
    "max_attempts",
    "retry_wait_min",
    "retry_wait_max",
    "max_retry_seconds",
    "pool_maxsize",
    "limiter",
    "logger_name",
)


def check_hook_params(params: Mapping[str, Any]) -> None:
    """Refuse ``hook_params`` the hook could not use, when the DAG is parsed rather than at run time.

    :param params: keyword arguments meant for :class:`DataForSeoHook`.
    :raises ValueError: naming an unknown key (with the accepted ones), or a bad ``timeout``,
        ``request_deadline``, ``max_attempts`` (an integer >= 1) or wait (a number of seconds >= 0).
    """
    unknown = sorted(set(params) - set(HOOK_PARAMS))
    if unknown:
        raise ValueError(
            f"hook_params: unknown {', '.join(map(repr, unknown))}; accepted: {', '.join(HOOK_PARAMS)}"
        )
    if "timeout" in params:
        check_timeout(params["timeout"])
    if "request_deadline" in params:
        check_deadline(params["request_deadline"])
    attempts = params.get("max_attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"hook_params: max_attempts must be an integer of at least 1, got {attempts!r}")
    for name in ("retry_wait_min", "retry_wait_max", "max_retry_seconds"):
        value = params.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"hook_params: {name} must be a number of seconds >= 0, got {value!r}")


def check_timeout(timeout: object) -> float | tuple[float, float]:
    """Return ``timeout`` in the form ``requests`` takes; raise :class:`ValueError` naming it otherwise.

    :param timeout: one positive number of seconds (connect and read alike), or a list or tuple of
        two, ``(connect, read)`` - JSON and YAML ``hook_params`` give a list.
    :return: the number as a float, or a ``(connect, read)`` tuple of floats.
    :raises ValueError: for anything else (``None``, a bool, a string, zero, a negative or
        non-finite number, a sequence of another length).
    """

    def seconds(value: object) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
            return float(value)
        return None

    if isinstance(timeout, (list, tuple)) and len(timeout) == 2:
        connect, read = seconds(timeout[0]), seconds(timeout[1])
        if connect is not None and read is not None:
            return connect, read
    elif (single := seconds(timeout)) is not None:
        return single
    raise ValueError(
        f"timeout must be a positive number of seconds or a list of two, [connect, read], got {timeout!r}"
    )


def as_sandbox(value: object) -> bool:
    """Read the connection extra ``sandbox``: a bool, or a string such as ``"true"`` / ``"off"``.

    :param value: the extra's value; strings 1/0/true/false/yes/no/on/off in any case, spaces around
        allowed, and the JSON numbers 1 and 0; an empty string is false; ``None`` (JSON null: the UI
        form's unset switch) is false.
    :return: whether to use ``https://sandbox.dataforseo.com``.
    :raises DataForSeoInvalidRequestError: (not retried) for any other value, naming it - rather than
        silently using the paid production API.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("", "0", "false", "no", "off"):
            return False
    raise DataForSeoInvalidRequestError(
        f"the connection's extra 'sandbox' must be true or false, got {value!r}: "
        "fix the connection (nothing was sent)"
    )


def user_agent() -> str:
    """``airflow-provider-dataforseo/<version> apache-airflow/<version>``."""
    try:
        airflow_version = version("apache-airflow-core")
    except PackageNotFoundError:  # pragma: no cover - always installed with Airflow 3
        airflow_version = "unknown"
    return f"airflow-provider-dataforseo/{__version__} apache-airflow/{airflow_version}"


def _with_port(url: str, port: object) -> str:
    """``url`` with the connection's Port added when it names none; refuse two different ports."""
    if not port:
        return url
    parts = urlsplit(url)
    try:
        own = parts.port
    except ValueError:  # an unreadable port: requests refuses the URL, naming it
        return url
    if own is None:
        return urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
    if str(own) != str(port).strip():
        raise DataForSeoInvalidRequestError(
            f"the connection's Base URL {url!r} names port {own} but its Port field says {port!r}: "
            "give the port once (nothing was sent)"
        )
    return url


def _without_api_version(url: str) -> str:
    """``url`` without a trailing ``/v3`` path (``https://api.dataforseo.com/v3/`` -> the root)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.lower().endswith("/v3"):
        return url
    root = urlunsplit(parts._replace(path=path[:-3])).rstrip("/")
    log.info(
        "The connection's Base URL %s ends in /v3, which every endpoint path starts with: using %s", url, root
    )
    return root


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (causes, contexts, urllib3's ``reason``, exception args)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack and len(seen) < 32:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        behind = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(e for e in behind if isinstance(e, BaseException))


def transport_error(exc: requests.RequestException, base_url: str, *, endpoint: str) -> DataForSeoError:
    """The error to raise for a request that got no HTTP reply, naming the URL and the likely fix.

    - TLS spoken to a plain-HTTP server (``SSLError`` "wrong version number", as against the
      emulator), or any other TLS failure: :class:`DataForSeoInvalidRequestError`, not retried
      (retrying cannot fix the connection's Host);
    - connection refused or a host name that does not resolve: :class:`DataForSeoUnreachableError`,
      retried :data:`UNREACHABLE_ATTEMPTS` times at most; on this machine it asks whether the
      emulator runs on that port;
    - anything else (a reset connection, a reply cut short): :class:`DataForSeoServerError`, retried.

    :param exc: what ``requests`` raised (not a timeout; those are mapped apart).
    :param base_url: the connection's Base URL.
    :param endpoint: the API path called.
    :return: the error (not raised).
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    except ValueError:
        port = _DEFAULT_PORTS.get(parts.scheme, 443)
    causes = list(_causes(exc))
    if isinstance(exc, requests.exceptions.SSLError):
        text = " ".join(str(cause) for cause in causes).lower()
        if parts.scheme == "https" and ("wrong version number" in text or "record layer" in text):
            plain = urlunsplit(parts._replace(scheme="http"))
            return DataForSeoInvalidRequestError(
                f"connection to {base_url} failed: the server there answers in plain HTTP, not TLS "
                f"(SSL: wrong version number), as the emulator does: write the connection's Host as "
                f"{plain} (nothing was sent)",
                endpoint=endpoint,
            )
        return DataForSeoInvalidRequestError(
            f"connection to {base_url} failed: TLS error ({_first_line(exc)}): check the connection's "
            f"Host (the API is {api.API_URL}; the emulator speaks plain http://)",
            endpoint=endpoint,
        )
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        where = (
            f"is the emulator running on port {port}? Start it with `dataforseo-emulator --port {port}`"
            if host in _LOOPBACK_HOSTS
            else "check the connection's Host and Port"
        )
        return DataForSeoUnreachableError(
            f"connection to {base_url} failed: nothing listens there (connection refused): {where}",
            endpoint=endpoint,
        )
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return DataForSeoUnreachableError(
            f"connection to {base_url} failed: the host name {host!r} does not resolve (DNS lookup "
            f"failed): check the connection's Host for a typo (the API is {api.API_URL}, the sandbox "
            f"{api.SANDBOX_URL})",
            endpoint=endpoint,
        )
    return DataForSeoServerError(
        f"connection to {base_url} failed: {type(exc).__name__} ({_first_line(exc)})", endpoint=endpoint
    )


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's text, cut to 200 characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else f"{text[:200]}..."


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _mask(secret: str) -> None:
    """Register a secret with Airflow's masker so it never appears in task logs."""
    from airflow.sdk.log import mask_secret

    mask_secret(secret)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("Attempt %d failed (%s); retrying in %.1f s", state.attempt_number, exc, wait)


@contextmanager
def fail_task_on_permanent_errors(*also: type[Exception]) -> Iterator[None]:
    """Turn errors a retry cannot fix into :class:`AirflowFailException` (no Airflow retries).

    A :class:`DataForSeoError` whose ``retryable`` is false (credentials, payment, invalid
    request), and any exception of the ``also`` types, fail the task at once with its message;
    retryable errors propagate unchanged so that the task's ``retries`` apply.

    :param also: further exception types to treat as permanent (e.g. a cost-guard error).
    :raises AirflowFailException: for the permanent kinds above.
    """
    try:
        yield
    except DataForSeoError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from exc
    except also as exc:
        raise AirflowFailException(str(exc)) from exc
