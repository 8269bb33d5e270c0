"""Read DataForSEO replies: both status levels, then items matched back to targets.

Pure module: no Airflow import, no network. Facts relied on
(``https://docs.dataforseo.com/v3/appendix/errors/`` and the endpoint doc of
``bulk_pages_summary/live``):

- the outcome is ``status_code`` at TWO levels, the envelope and each ``tasks[i]``; HTTP 200 with
  envelope 20000 can still hold a failed task, ``result: null`` or ``tasks: null``;
- every item field may be missing or null; items carry ``url``; a reply may hold fewer items than
  targets, in another order, so items are matched by a normalised ``url``, never by position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.exceptions import DataForSeoServerError, error_for_status
from airflow_provider_dataforseo.targets import normalise_target

Item = dict[str, Any]
_T = TypeVar("_T")


@dataclass(frozen=True)
class TaskResult:
    """One successful live task.

    :ivar task_id: the API's task id (UUID-like string).
    :ivar endpoint: API path that was called.
    :ivar cost_usd: what the task was charged, USD.
    :ivar items: the items of every ``result[]`` entry, in reply order (only JSON objects).
    :ivar data: the task's ``data`` echo of the request (``{}`` when absent).
    :ivar malformed_items: entries of ``items`` that were not JSON objects (dropped, counted).
    :ivar results: the task's ``result[]`` objects as sent (e.g. the account for ``user_data``);
        when the items were kept raw, an entry's ``items`` is its list of raw items.
    :ivar raw_items: when the reply was read by :func:`decode_reply` with ``raw_items=True``: each
        item as the API's JSON text, untouched (``msgspec.Raw``; ``items`` is then empty), else
        ``None``.
    :ivar item_urls: with ``raw_items``: each raw item's ``url`` value (for matching), else ``None``.
    """

    task_id: str | None
    endpoint: str
    cost_usd: float
    items: list[Item]
    data: dict[str, Any] = field(default_factory=dict)
    malformed_items: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    raw_items: list[msgspec.Raw] | None = None
    item_urls: list[object] | None = None

    @property
    def item_count(self) -> int:
        """How many usable items the task holds (dicts or raw)."""
        return len(self.raw_items) if self.raw_items is not None else len(self.items)


class _RawTask(msgspec.Struct):
    id: Any = None
    status_code: Any = None
    status_message: Any = None
    cost: Any = None
    data: Any = None
    result: list[dict[str, msgspec.Raw]] | None = None


class _RawEnvelope(msgspec.Struct):
    status_code: Any = None
    status_message: Any = None
    cost: Any = None
    tasks: list[_RawTask] | None = None


class _ItemUrl(msgspec.Struct, gc=False):  # 1000 a reply, never in a cycle: not GC-tracked
    url: Any = None


_ENVELOPE_DECODER = msgspec.json.Decoder(_RawEnvelope)
_RAW_LIST_DECODER = msgspec.json.Decoder(list[msgspec.Raw] | None)
_ITEM_URL_DECODER = msgspec.json.Decoder(_ItemUrl)
_ITEM_URLS_DECODER = msgspec.json.Decoder(list[_ItemUrl] | None)


def decode_reply(body: bytes, *, raw_items: bool = False) -> object:
    """Decode a reply's JSON body for :func:`parse_task_response`.

    With ``raw_items``, each ``tasks[].result[].items[]`` entry is kept as its JSON text
    (``msgspec.Raw``) instead of being built into a dict: a 1000-item reply is read ~5x faster,
    and the rows file gets each item exactly as the API sent it. A body whose shape does not fit
    (e.g. ``tasks`` not a list of objects) is decoded in full instead, so every oddity reaches
    :func:`parse_task_response` as sent.

    :param body: the HTTP body.
    :param raw_items: keep items raw.
    :return: the decoded JSON: dicts and lists; with ``raw_items``, items lists hold ``msgspec.Raw``.
    :raises ValueError: when the body is not JSON (``msgspec.DecodeError``).
    """
    if raw_items:
        try:
            envelope = _ENVELOPE_DECODER.decode(body)
        except msgspec.ValidationError:
            pass  # valid JSON of another shape: decoded in full below
        else:
            return _envelope_dict(envelope)
    return msgspec.json.decode(body)


def _envelope_dict(envelope: _RawEnvelope) -> dict[str, Any]:
    tasks = None
    if envelope.tasks is not None:
        tasks = [
            {
                "id": task.id,
                "status_code": task.status_code,
                "status_message": task.status_message,
                "cost": task.cost,
                "data": task.data,
                "result": None if task.result is None else [_result_dict(entry) for entry in task.result],
            }
            for task in envelope.tasks
        ]
    return {
        "status_code": envelope.status_code,
        "status_message": envelope.status_message,
        "cost": envelope.cost,
        "tasks": tasks,
    }


class RawItems(list[msgspec.Raw]):
    """The ``items`` of one ``result[]`` entry kept raw, with each item's ``url`` beside it.

    :ivar urls: each item's ``url`` value, in item order.
    :ivar malformed: entries of the list that were not JSON objects (left out, counted).
    """

    urls: list[object]
    malformed: int


def _raw_items(raw: msgspec.Raw) -> RawItems | None:
    """An ``items`` value as :class:`RawItems`, or ``None`` when it is not a list."""
    try:
        entries = _RAW_LIST_DECODER.decode(raw)
    except msgspec.ValidationError:
        return None
    if entries is None:
        return None
    items = RawItems()
    items.malformed = 0
    try:  # one pass in C for the usual reply, where every entry is an object
        items.urls = [item.url for item in _ITEM_URLS_DECODER.decode(raw) or ()]
        items.extend(entries)
    except msgspec.ValidationError:  # some entries are not objects: sorted out one by one
        items.urls = []
        for entry in entries:
            try:
                url = _ITEM_URL_DECODER.decode(entry).url
            except msgspec.ValidationError:
                items.malformed += 1
                continue
            items.append(entry)
            items.urls.append(url)
    return items


def _result_dict(entry: dict[str, msgspec.Raw]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, raw in entry.items():
        items = _raw_items(raw) if key == "items" else None
        # not a list: decoded in full, parse_task_response ignores it
        result[key] = items if items is not None else msgspec.json.decode(raw)
    return result


def _status(obj: Mapping[str, Any]) -> tuple[int | None, str]:
    code = obj.get("status_code")
    message = obj.get("status_message")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), (
        message if isinstance(message, str) else "no status_message"
    )


def _cost(value: object) -> float | None:
    """A usable ``cost`` in USD: a finite number >= 0 (a negative one would lower the counted spend)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    return None


def parse_task_response(payload: object, *, endpoint: str, http_status: int = 200) -> TaskResult:
    """Check a live endpoint's reply at both status levels and return its one task.

    :param payload: the decoded JSON body.
    :param endpoint: the API path called (carried by errors).
    :param http_status: the HTTP status of the reply (decides when the body has no status).
    :return: the task's :class:`TaskResult`.
    :raises DataForSeoError: the subclass matching the envelope's or the task's ``status_code``;
        :class:`DataForSeoServerError` (retryable) for a body that is not an envelope, an envelope
        without tasks (``tasks: null``), or a task that is not an object.
    """
    if not isinstance(payload, Mapping):
        raise error_for_status(
            None,
            f"reply is not a JSON object (HTTP {http_status})",
            endpoint=endpoint,
            # below 400 the HTTP status says nothing: an unreadable 200 is a (retryable) server fault
            http_status=http_status if http_status >= 400 else None,
        )
    code, message = _status(payload)
    if code != api.OK:
        if code is None and http_status < 400:
            raise DataForSeoServerError("reply has no envelope status_code", endpoint=endpoint)
        raise error_for_status(code, message, endpoint=endpoint, http_status=http_status)
    tasks = payload.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise DataForSeoServerError(
            f"envelope {code} holds no task (tasks: {tasks!r:.40})", status_code=code, endpoint=endpoint
        )
    task = tasks[0]
    if not isinstance(task, Mapping):
        raise DataForSeoServerError("task is not a JSON object", status_code=code, endpoint=endpoint)
    task_id = task.get("id") if isinstance(task.get("id"), str) else None
    task_code, task_message = _status(task)
    if task_code != api.OK:
        raise error_for_status(task_code, task_message, task_id=task_id, endpoint=endpoint)
    items: list[Item] = []
    raw_items: list[msgspec.Raw] = []
    item_urls: list[object] = []
    malformed = 0
    raw_results = task.get("result")
    results = [r for r in raw_results if isinstance(r, dict)] if isinstance(raw_results, list) else []
    for result in results:
        entries = result.get("items")
        if isinstance(entries, RawItems):  # decode_reply(raw_items=True): objects only, counted
            raw_items.extend(entries)
            item_urls.extend(entries.urls)
            malformed += entries.malformed
            continue
        for item in entries if isinstance(entries, list) else ():
            if isinstance(item, dict):
                items.append(item)
            else:
                malformed += 1
    cost = _cost(task.get("cost"))
    if cost is None:
        cost = _cost(payload.get("cost")) or 0.0
    data = task.get("data")
    return TaskResult(
        task_id=task_id,
        endpoint=endpoint,
        cost_usd=cost,
        items=items,
        data=dict(data) if isinstance(data, Mapping) else {},
        malformed_items=malformed,
        results=results,
        raw_items=raw_items or None,
        item_urls=item_urls if raw_items else None,
    )


def match_keys(url: object) -> list[str]:
    """Keys under which an item's ``url`` may answer a target, most specific first.

    The exact echo of ``url`` is unconfirmed (case, trailing slash, IDN form, escapes), so the
    ``url`` goes through the targets' own normal form (:func:`normalise_target`): an echo in another
    spelling (``%c3%a9`` for ``%C3%A9``, ``%7Euser`` for ``~user``, ``café``, ``:443``) meets the
    target sent. A site's root page (``https://www.x.com/``) may also answer the domain target
    ``x.com``.

    :param url: an item's ``url`` value.
    :return: candidate normalised targets (empty when ``url`` is unusable).
    """
    try:
        key = normalise_target(url)
    except ValueError:
        return []
    keys = [key]
    if "://" in key:
        parts = urlsplit(key)
        if parts.path == "/" and not parts.query and parts.hostname:
            host = parts.hostname
            keys.append(host[4:] if host.startswith("www.") else host)
        elif parts.path != "/":  # the same page with or without its trailing slash, as a fallback
            path = parts.path[:-1] if parts.path.endswith("/") else f"{parts.path}/"
            keys.append(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")))
    else:
        keys.extend([f"https://{key}/", f"http://{key}/"])
    return keys


@dataclass
class MatchedItems(Generic[_T]):
    """Items of one task matched to the chunk's targets.

    :ivar by_target: target -> its item (first item wins when two answer one target).
    :ivar unmatched: items whose ``url`` answers no target of the chunk (kept, never dropped).
    :ivar missing: targets of the chunk that no item answers, in chunk order.
    """

    by_target: dict[str, _T]
    unmatched: list[_T]
    missing: list[str]


def match_items(
    items: Sequence[_T], targets: Sequence[str], *, urls: Sequence[object] | None = None
) -> MatchedItems[_T]:
    """Match items to targets by normalised ``url`` (never by position).

    :param items: the task's items: dicts, or raw items (``msgspec.Raw``) with ``urls`` given.
    :param targets: the normalised targets that were sent.
    :param urls: each item's ``url`` value, in item order; default ``item.get("url")``.
    :return: the :class:`MatchedItems`.
    """
    if urls is None:
        urls = [item.get("url") if isinstance(item, Mapping) else None for item in items]
    wanted = set(targets)
    by_target: dict[str, _T] = {}
    unmatched: list[_T] = []
    for item, url in zip(items, urls, strict=True):
        if isinstance(url, str) and url in wanted and url not in by_target:
            by_target[url] = item  # the exact echo of a target sent: no need to normalise (~20 us)
            continue
        for key in match_keys(url):
            if key in wanted and key not in by_target:
                by_target[key] = item
                break
        else:
            unmatched.append(item)
    missing = [target for target in targets if target not in by_target]
    return MatchedItems(by_target=by_target, unmatched=unmatched, missing=missing)
