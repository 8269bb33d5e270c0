"""Snapshots of watched item fields, the diff against a baseline, and the alert message.

Pure module: no Airflow import, no I/O. Used by the change sensor and its trigger through
:mod:`airflow_provider_dataforseo.watch`.

A *snapshot* maps each normalised target to the watched fields of its item::

    {"https://x.com/a": {"url": "https://x.com/a", "fields": {"lost_date": None, "broken_backlinks": 3}}}

Rules (they make "no data" impossible to mistake for a change):

- a target without an item has no entry: it is "no data", never "lost";
- a field missing from the item is "no data" for that field;
- ``null`` means "nothing lost" for the date fields (:data:`DATE_FIELDS`, endpoint doc:
  ``lost_date`` is null while nothing is lost) and is a value there; for every other field a
  ``null`` is "no data" (the API sends ``null`` where it has no number);
- dates (``"2019-11-15 12:57:46 +00:00"``) are compared as timezone-aware UTC instants and stored
  in that format in UTC; an unparseable date string is compared as text.

A *change* is ``{"target", "url", "field", "old", "new", "kind", "delta"}`` with ``kind`` one of
:data:`KINDS`: ``lost`` (``lost_date`` null -> date), ``recovered`` (date -> null),
``lost_date_changed`` (date -> another date), ``broken_backlinks_increased`` /
``broken_backlinks_decreased`` (``delta`` = new - old), and ``changed`` for any other field
(``delta`` when both values are numbers, else ``None``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from airflow_provider_dataforseo import api

Change = dict[str, Any]
Entry = dict[str, Any]
Snapshot = dict[str, Entry]

#: Fields watched unless told otherwise.
DEFAULT_WATCH_FIELDS: Final = ("lost_date", "broken_backlinks")
#: Fields holding the API's dates, where ``null`` is a value ("none").
DATE_FIELDS: Final = frozenset({"lost_date", "first_seen"})
#: Every kind of change, in the order counts and messages list them.
KINDS: Final = (
    "lost",
    "recovered",
    "lost_date_changed",
    "broken_backlinks_increased",
    "broken_backlinks_decreased",
    "changed",
)
#: Lines of changes a message shows before "... and N more".
MESSAGE_MAX_LINES: Final = 200

_DATE_OUT_FORMAT: Final = "%Y-%m-%d %H:%M:%S +00:00"


def check_watch_fields(watch_fields: object) -> tuple[str, ...]:
    """Validate ``watch_fields``: a non-empty list of distinct, non-empty field names.

    :param watch_fields: e.g. ``("lost_date", "broken_backlinks")``; a single string is refused
        (it would be read letter by letter).
    :return: the names as a tuple, in the given order.
    :raises ValueError: naming the bad value.
    """
    if isinstance(watch_fields, str) or not isinstance(watch_fields, Iterable):
        raise ValueError(f"watch_fields must be a list of item field names, got {watch_fields!r}")
    fields = tuple(watch_fields)
    bad = [name for name in fields if not isinstance(name, str) or not name.strip()]
    if not fields or bad:
        raise ValueError(f"watch_fields must be non-empty field names, got {fields!r}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"watch_fields has duplicates: {fields!r}")
    return fields


def parse_api_date(value: str) -> datetime | None:
    """The API's ``"2019-11-15 12:57:46 +00:00"`` as an aware UTC datetime, or ``None``.

    ISO 8601 (``"2019-11-15T12:57:46+00:00"``) is accepted too; a date without an offset is read
    as UTC (the API's dates are UTC, endpoint doc ``first_seen``).
    """
    text = value.strip()
    for parse in (lambda s: datetime.strptime(s, api.DATE_FORMAT), datetime.fromisoformat):
        try:
            moment = parse(text)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    return None


def normalise_value(field: str, value: Any) -> tuple[bool, Any]:
    """Read one field value of an item under the rules above.

    :param field: the field's name.
    :param value: the item's value (``None`` for JSON null).
    :return: ``(has_data, value)``; dates as ``"YYYY-MM-DD HH:MM:SS +00:00"`` UTC.
    """
    if field in DATE_FIELDS:
        if value is None:
            return True, None
        if isinstance(value, str):
            moment = parse_api_date(value)
            return True, moment.strftime(_DATE_OUT_FORMAT) if moment is not None else value
        return True, value
    if value is None:
        return False, None
    return True, value


def snapshot_entry(item: Mapping[str, Any], watch_fields: Sequence[str]) -> Entry:
    """The watched fields of one item: ``{"url": ..., "fields": {field: value}}`` (data only).

    :param item: the API's item.
    :param watch_fields: the fields to keep.
    :return: the entry; a field without data is left out of ``fields``.
    """
    fields: dict[str, Any] = {}
    for name in watch_fields:
        if name not in item:
            continue
        has_data, value = normalise_value(name, item[name])
        if has_data:
            fields[name] = value
    url = item.get("url")
    return {"url": url if isinstance(url, str) else None, "fields": fields}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(field: str, old: Any, new: Any) -> bool:
    if field in DATE_FIELDS and isinstance(old, str) and isinstance(new, str):
        old_moment, new_moment = parse_api_date(old), parse_api_date(new)
        if old_moment is not None and new_moment is not None:
            return old_moment == new_moment
    if _is_number(old) and _is_number(new):
        return bool(old == new)
    return type(old) is type(new) and bool(old == new)


def classify(field: str, old: Any, new: Any) -> tuple[str, int | float | None]:
    """The kind of a change of ``field`` from ``old`` to ``new`` (values known to differ).

    :return: ``(kind, delta)``; ``delta`` is ``new - old`` for two numbers, else ``None``.
    """
    delta = new - old if _is_number(old) and _is_number(new) else None
    if field == "lost_date":
        if old is None:
            return "lost", None
        if new is None:
            return "recovered", None
        return "lost_date_changed", None
    if field == "broken_backlinks" and delta is not None:
        return ("broken_backlinks_increased" if delta > 0 else "broken_backlinks_decreased"), delta
    return "changed", delta


def diff_entries(target: str, old: Entry, new: Entry, watch_fields: Sequence[str]) -> list[Change]:
    """The changes of one target between two entries; a field without data on either side is none.

    :return: changes in ``watch_fields`` order.
    """
    changes: list[Change] = []
    old_fields, new_fields = old.get("fields", {}), new.get("fields", {})
    for name in watch_fields:
        if name not in old_fields or name not in new_fields:
            continue
        before, after = old_fields[name], new_fields[name]
        if _same(name, before, after):
            continue
        kind, delta = classify(name, before, after)
        changes.append(
            {
                "target": target,
                "url": new.get("url") or old.get("url") or target,
                "field": name,
                "old": before,
                "new": after,
                "kind": kind,
                "delta": delta,
            }
        )
    return changes


@dataclass
class Evaluation:
    """A snapshot compared with a baseline.

    :ivar changes: every change, in target order (the snapshot's), then ``watch_fields`` order.
    :ivar additions: values the baseline lacked (new targets, or fields that had no data): safe to
        store at any time, they are not changes.
    :ivar no_data: targets of the baseline without data in the snapshot (kept, never "lost").
    """

    changes: list[Change]
    additions: Snapshot
    no_data: list[str]


def evaluate(
    baseline: Mapping[str, Entry], snapshot: Mapping[str, Entry], watch_fields: Sequence[str]
) -> Evaluation:
    """Compare a snapshot with the baseline.

    :param baseline: target -> entry, as stored.
    :param snapshot: target -> entry, as fetched now (targets without data absent).
    :param watch_fields: the watched fields.
    :return: the :class:`Evaluation`.
    """
    changes: list[Change] = []
    additions: Snapshot = {}
    for target, entry in snapshot.items():
        old = baseline.get(target)
        if old is None:
            additions[target] = entry
            continue
        changes.extend(diff_entries(target, old, entry, watch_fields))
        missing = {
            name: value for name, value in entry["fields"].items() if name not in old.get("fields", {})
        }
        if missing:
            additions[target] = {"url": entry.get("url") or old.get("url"), "fields": missing}
    no_data = [target for target in baseline if target not in snapshot]
    return Evaluation(changes, additions, no_data)


def merge(baseline: Mapping[str, Entry], updates: Mapping[str, Entry]) -> Snapshot:
    """A new baseline: ``baseline`` with the fields of ``updates`` laid over it (nothing removed)."""
    out: Snapshot = {
        target: {"url": e.get("url"), "fields": dict(e.get("fields", {}))} for target, e in baseline.items()
    }
    for target, entry in updates.items():
        current = out.setdefault(target, {"url": entry.get("url"), "fields": {}})
        current["fields"].update(entry.get("fields", {}))
        current["url"] = entry.get("url") or current.get("url")
    return out


def apply_changes(baseline: Mapping[str, Entry], changes: Iterable[Mapping[str, Any]]) -> Snapshot:
    """A new baseline: ``baseline`` with each change's ``new`` value stored.

    :param baseline: target -> entry.
    :param changes: changes as :func:`evaluate` made them (only ``target``, ``url``, ``field``,
        ``new`` are read).
    :return: the updated baseline (``baseline`` is untouched).
    """
    updates: Snapshot = {}
    for change in changes:
        entry = updates.setdefault(change["target"], {"url": change.get("url"), "fields": {}})
        entry["fields"][change["field"]] = change["new"]
    return merge(baseline, updates)


def count_changes(changes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``{kind: n for every kind in KINDS, "total": n, "targets": distinct targets changed}``."""
    counts = dict.fromkeys(KINDS, 0)
    for change in changes:
        counts[change["kind"]] = counts.get(change["kind"], 0) + 1
    counts["total"] = len(changes)
    counts["targets"] = len({change["target"] for change in changes})
    return counts


def _shown(value: Any) -> str:
    return "none" if value is None else str(value)


def change_line(change: Mapping[str, Any]) -> str:
    """One readable line: ``https://x.com/a  broken_backlinks: 3 -> 5 (+2, broken_backlinks_increased)``."""
    delta = change.get("delta")
    note = f"{delta:+g}, {change['kind']}" if _is_number(delta) else change["kind"]
    return f"{change['url']}  {change['field']}: {_shown(change['old'])} -> {_shown(change['new'])} ({note})"


def summary_line(counts: Mapping[str, int]) -> str:
    """``"3 changes on 2 pages (lost 1, broken_backlinks_increased 2)"``."""
    parts = [f"{kind} {counts[kind]}" for kind in KINDS if counts.get(kind)]
    total, pages = counts.get("total", 0), counts.get("targets", 0)
    return f"{total} change{'s' if total != 1 else ''} on {pages} page{'s' if pages != 1 else ''}" + (
        f" ({', '.join(parts)})" if parts else ""
    )


def render_message(
    changes: Sequence[Mapping[str, Any]], *, max_lines: int = MESSAGE_MAX_LINES
) -> dict[str, str]:
    """The alert for a list of changes, as a subject, plain text and HTML.

    :param changes: the changes (see the module doc).
    :param max_lines: lines of changes shown before ``... and N more``.
    :return: ``{"subject", "text", "html"}``; every changed page is named with field, old and new
        values (the first ``max_lines`` of them).
    """
    counts = count_changes(changes)
    subject = f"DataForSEO backlinks: {summary_line(counts)}"
    shown = list(changes[:max_lines])
    more = len(changes) - len(shown)
    lines = [subject, "", *(f"- {change_line(change)}" for change in shown)]
    if more:
        lines.append(f"... and {more} more")
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_shown(value))}</td>"
            for value in (c["url"], c["field"], c["old"], c["new"], c["kind"], c.get("delta"))
        )
        + "</tr>"
        for c in shown
    )
    html_body = (
        f"<p>{html.escape(subject)}</p>"
        "<table><tr><th>page</th><th>field</th><th>old</th><th>new</th><th>kind</th><th>delta</th></tr>"
        f"{rows}</table>" + (f"<p>... and {more} more</p>" if more else "")
    )
    return {"subject": subject, "text": "\n".join(lines), "html": html_body}
