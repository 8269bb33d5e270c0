"""Errors raised by the provider, one class per kind of DataForSEO failure.

The API reports outcomes as a ``status_code`` at two levels (the envelope and each task), see
``https://docs.dataforseo.com/v3/appendix/errors/``. :func:`error_for_status` maps a code (or an
HTTP status when there is no JSON) to the right kind. ``retryable`` tells the hook whether the same
request may succeed if sent again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_dataforseo import api

if TYPE_CHECKING:
    from collections.abc import Sequence


class DataForSeoError(Exception):
    """A DataForSEO request failed.

    :param status_message: the API's ``status_message`` (or a description of the transport fault).
    :param status_code: the API's ``status_code`` (``4xxxx``/``5xxxx``), or the HTTP status when the
        reply carried no JSON status, or ``None`` for a connection-level fault.
    :param task_id: the id of the failed task, when the API gave one.
    :param endpoint: the API path that was called, e.g. ``/v3/backlinks/bulk_pages_summary/live``.
    """

    #: Whether sending the same request again may succeed.
    retryable: bool = False

    def __init__(
        self,
        status_message: str,
        *,
        status_code: int | None = None,
        task_id: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.status_message = status_message
        self.task_id = task_id
        self.endpoint = endpoint
        super().__init__(str(self))

    def __str__(self) -> str:
        code = f" {self.status_code}" if self.status_code is not None else ""
        parts = [f"DataForSEO{code}: {self.status_message}"]
        if self.endpoint:
            parts.append(f"endpoint {self.endpoint}")
        if self.task_id:
            parts.append(f"task {self.task_id}")
        hint = _HINTS.get(type(self).__name__)
        text = " | ".join(parts)
        return f"{text}. {hint}" if hint else text

    def __reduce__(self) -> tuple[object, ...]:  # keep keyword arguments across pickling
        return (
            _rebuild,
            (type(self), self.status_message, self.status_code, self.task_id, self.endpoint),
        )


def _rebuild(
    cls: type[DataForSeoError],
    status_message: str,
    status_code: int | None,
    task_id: str | None,
    endpoint: str | None,
) -> DataForSeoError:
    return cls(status_message, status_code=status_code, task_id=task_id, endpoint=endpoint)


class DataForSeoAuthenticationError(DataForSeoError):
    """Credentials refused (HTTP 401, 40100) or account not verified (40104). Not retried."""


class DataForSeoPaymentError(DataForSeoError):
    """Payment or access refused: 40200/HTTP 402, 40201, 40203-40207, 40210. Not retried."""


class DataForSeoRateLimitError(DataForSeoError):
    """Per-minute limit (40202) or simultaneous-request limit (40209) exceeded. Retried."""

    retryable = True


class DataForSeoInvalidRequestError(DataForSeoError):
    """The request itself is wrong: 40000, 40006, 404xx, 405xx and other 4xxxx. Not retried."""


class DataForSeoServerError(DataForSeoError):
    """Transient fault: 5xxxx, HTTP 5xx, connection errors, timeouts, unreadable replies. Retried."""

    retryable = True


class NotShown:
    """Stands for a value an error does not show (a file's content that is not target-like).

    :param length: the value's length in characters.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"(value not shown: {self.length} characters, not a URL or host name)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotShown) and other.length == self.length

    def __hash__(self) -> int:
        return hash(("NotShown", self.length))


#: Characters of a bad value an error message shows.
MAX_SHOWN_VALUE = 200


def _shown_value(value: object) -> str:
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE:
        head, sep, tail = value[:MAX_SHOWN_VALUE], "... (", value[MAX_SHOWN_VALUE:]
        if tail.startswith(sep) and tail.endswith(" characters)"):  # cut already, with its length
            return f"{head!r}{tail}"
        return f"{head!r}... ({len(value)} characters)"
    return repr(value)


class InvalidTargetsError(ValueError):
    """One or more targets are malformed; raised before any request is sent.

    :param errors: ``(position, value, reason)`` for every bad entry: ``position`` 0-based in the
        input as given (shown ``#3``), or a place such as ``"line 12"`` (shown as is); ``value`` is
        shown cut to :data:`MAX_SHOWN_VALUE` characters.
    :param source: the file or sitemap the entries came from, if any.
    """

    def __init__(self, errors: Sequence[tuple[int | str, object, str]], *, source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        shown = "\n".join(
            f"  {pos if isinstance(pos, str) else f'#{pos}'}: {_shown_value(value)}: {reason}"
            for pos, value, reason in self.errors[:50]
        )
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        where = f" in {source}" if source else ""
        super().__init__(f"{len(self.errors)} invalid target(s){where}, nothing was sent:\n{shown}{more}")

    def __reduce__(self) -> tuple[object, ...]:  # rebuild from the errors, not from the message
        return (_rebuild_invalid, (type(self), self.errors, self.source))


def _rebuild_invalid(
    cls: type[InvalidTargetsError], errors: list[tuple[int | str, object, str]], source: str | None
) -> InvalidTargetsError:
    return cls(errors, source=source)


_HINTS = {
    "DataForSeoAuthenticationError": "Check the connection's API login and password "
    "(from https://app.dataforseo.com/api-access, not the website password).",
    "DataForSeoPaymentError": "Check the account's balance, limits and Backlinks API subscription.",
    "DataForSeoRateLimitError": "Lower max_active_requests or use an Airflow pool.",
}

_PAYMENT_CODES = frozenset(
    {
        api.PAYMENT_REQUIRED,
        api.ACCOUNT_PAUSED,
        api.COST_LIMIT_EXCEEDED,
        api.ACCESS_DENIED,
        api.DUPLICATE_TASK_LIMIT_HOUR,
        api.DUPLICATE_TASK_LIMIT_DAY,
        api.IP_NOT_WHITELISTED,
        api.INSUFFICIENT_FUNDS,
    }
)


def error_for_status(
    status_code: int | None,
    status_message: str,
    *,
    task_id: str | None = None,
    endpoint: str | None = None,
    http_status: int | None = None,
) -> DataForSeoError:
    """Build the exception for a failed DataForSEO status.

    :param status_code: the API's five-digit ``status_code`` (envelope or task), or ``None`` when
        the reply had none; then ``http_status`` decides.
    :param status_message: the API's ``status_message`` or a description of the fault.
    :param task_id: id of the failed task, if any.
    :param endpoint: the API path called.
    :param http_status: the HTTP status of the reply, if there was one.
    :return: an instance of the matching :class:`DataForSeoError` subclass (not raised).
    """
    code = status_code if status_code is not None else http_status
    kind: type[DataForSeoError]
    if code in (api.UNAUTHORIZED, api.ACCOUNT_NOT_VERIFIED, 401):
        kind = DataForSeoAuthenticationError
    elif code in _PAYMENT_CODES or code == 402:
        kind = DataForSeoPaymentError
    elif code in (api.RATE_LIMIT_PER_MINUTE, api.TOO_MANY_SIMULTANEOUS_REQUESTS, 429):
        kind = DataForSeoRateLimitError
    elif code is None or 50000 <= code < 60000 or 500 <= code < 600:
        kind = DataForSeoServerError
    else:
        kind = DataForSeoInvalidRequestError
    return kind(status_message, status_code=code, task_id=task_id, endpoint=endpoint)
