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
- ``""`` is "nothing lost" too for the date fields; dates in any format the API and its clients
  show (``"2019-11-15 12:57:46 +00:00"``, fractional seconds, ``UTC``, ISO ``T``/``Z``) are read as
  UTC instants and stored as ``"YYYY-MM-DD HH:MM:SS +00:00"``; counts (:data:`COUNT_FIELDS`,
  e.g. ``broken_backlinks``) are compared as integers, ``"3"`` being ``3``. A value that is no date
  / no whole number is "no data" for that field (with a warning), never a change. The baseline
  stores these normal values, so the next check compares like with like.

A *change* is ``{"target", "inputs", "url", "field", "old", "new", "kind", "delta"}`` (``inputs``:
the user's original spellings of the target) with ``kind`` one of
:data:`KINDS`: ``lost`` (``lost_date`` null -> date), ``recovered`` (date -> null),
``lost_date_changed`` (date -> another date), ``broken_backlinks_increased`` /
``broken_backlinks_decreased`` (``delta`` = new - old), and ``changed`` for any other field
(``delta`` when both values are numbers, else ``None``).
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

Change = dict[str, Any]
Entry = dict[str, Any]
Snapshot = dict[str, Entry]

#: Fields watched unless told otherwise.
DEFAULT_WATCH_FIELDS: Final = ("lost_date", "broken_backlinks")
#: Fields holding the API's dates, where ``null`` is a value ("none").
DATE_FIELDS: Final = frozenset({"lost_date", "first_seen"})
#: Fields holding whole counts (endpoint doc, "items": integers), compared as integers; a numeric
#: string such as ``"3"`` is the same count as ``3``.
COUNT_FIELDS: Final = frozenset(
    {
        "rank",
        "main_domain_rank",
        "backlinks",
        "backlinks_spam_score",
        "broken_backlinks",
        "broken_pages",
        "referring_domains",
        "referring_domains_nofollow",
        "referring_main_domains",
        "referring_main_domains_nofollow",
        "referring_ips",
        "referring_subnets",
        "referring_pages",
        "referring_pages_nofollow",
    }
)
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
_DATE_OUT_FORMAT_MICRO: Final = "%Y-%m-%d %H:%M:%S.%f +00:00"
_INTEGER_RE: Final = re.compile(r"[+-]?\d+")
_DECIMAL_RE: Final = re.compile(r"[+-]?\d+\.\d*(?:[eE][+-]?\d+)?")

log = logging.getLogger(__name__)


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


_DATE_RE: Final = re.compile(
    r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


def parse_api_date(value: str) -> datetime | None:
    """A date as the API and its clients write it, as an aware UTC datetime; ``None`` if unreadable.

    Accepted (any one instant, however written): the API's ``"2019-11-15 12:57:46 +00:00"``,
    fractional seconds ``"2019-11-15 12:57:46.000 +00:00"``, ``"2019-11-15 12:57:46 UTC"``, ISO
    8601 ``"2019-11-15T12:57:46+00:00"`` / ``"2019-11-15T12:57:46Z"``, offsets ``+0200`` /
    ``+02``, and no offset at all (read as UTC: the API's dates are UTC, endpoint doc
    ``first_seen``). Seconds may be left out, and a bare date is midnight UTC.

    :param value: the text.
    :return: the instant in UTC, or ``None`` when the text is no date.
    """
    match = _DATE_RE.fullmatch(value.strip())
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    text = f"{day}T{clock or '00:00'}"
    if clock is not None and clock.count(":") == 1:
        text += ":00"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    if offset is None or offset.upper() in ("Z", "UTC", "GMT"):
        text += "+00:00"
    else:
        digits = offset[1:].replace(":", "")
        text += f"{offset[0]}{digits[:2]}:{digits[2:4] or '00'}"
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except ValueError:  # e.g. month 13, hour 25
        return None


def format_api_date(moment: datetime) -> str:
    """An instant in the API's own form, UTC: ``"2019-11-15 12:57:46 +00:00"`` (microseconds kept
    only when not zero: ``"2019-11-15 12:57:46.250000 +00:00"``)."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime(_DATE_OUT_FORMAT_MICRO if moment.microsecond else _DATE_OUT_FORMAT)


def _as_count(value: object) -> int | None:
    """A count as an integer: ``3``, ``3.0``, ``"3"``, ``" 3 "``; ``None`` when it is no count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER_RE.fullmatch(text):
            return int(text)
        if _DECIMAL_RE.fullmatch(text):
            return _as_count(float(text))
    return None


def normalise_value(field: str, value: Any) -> tuple[bool, Any]:
    """Read one field value of an item (or of a stored baseline) under the rules above.

    - date fields (:data:`DATE_FIELDS`): ``null`` and ``""`` are ``None`` ("nothing lost"), any
      format :func:`parse_api_date` reads becomes ``"YYYY-MM-DD HH:MM:SS +00:00"`` UTC; anything
      else is no data (logged as a warning), never a change;
    - count fields (:data:`COUNT_FIELDS`): integers, numeric strings (``"3"``) and whole floats
      become ``int``; anything else non-null is no data (logged as a warning), never a change;
    - other fields: ``null`` is no data, any other value is kept as it is.

    :param field: the field's name.
    :param value: the item's value (``None`` for JSON null).
    :return: ``(has_data, value)``.
    """
    if field in DATE_FIELDS:
        if value is None or (isinstance(value, str) and not value.strip()):
            return True, None
        moment = parse_api_date(value) if isinstance(value, str) else None
        if moment is None:
            log.warning("%s %r is not a date: no data for this field this time", field, value)
            return False, None
        return True, format_api_date(moment)
    if value is None:
        return False, None
    if field in COUNT_FIELDS:
        count = _as_count(value)
        if count is None:
            log.warning("%s %r is not a whole number: no data for this field this time", field, value)
            return False, None
        return True, count
    return True, value


def normalise_entry(entry: Mapping[str, Any], watch_fields: Sequence[str]) -> Entry:
    """A stored or fetched entry with every value read by :func:`normalise_value`.

    :param entry: ``{"url": ..., "fields": {field: value}}``.
    :param watch_fields: the fields kept (others are dropped: a field no longer watched keeps
        nothing stale that could alert once it is watched again).
    :return: a new entry; values without data are left out.
    """
    fields: dict[str, Any] = {}
    stored = entry.get("fields")
    for name in watch_fields:
        if isinstance(stored, Mapping) and name in stored:
            has_data, value = normalise_value(name, stored[name])
            if has_data:
                fields[name] = value
    url = entry.get("url")
    return {"url": url if isinstance(url, str) else None, "fields": fields}


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
    """Whether two normal values (see :func:`normalise_value`) are the same value."""
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


def diff_entries(
    target: str,
    old: Entry,
    new: Entry,
    watch_fields: Sequence[str],
    *,
    inputs: Sequence[str] | None = None,
) -> list[Change]:
    """The changes of one target between two entries; a field without data on either side is none.

    Both entries are read through :func:`normalise_value` first, so ``"3"`` after ``3``, or the
    same instant written another way, is no change.

    :param inputs: the user's original input strings of ``target`` (default ``[target]``).
    :return: changes in ``watch_fields`` order; ``old`` and ``new`` are normal values.
    """
    changes: list[Change] = []
    old_fields = normalise_entry(old, watch_fields)["fields"]
    new_fields = normalise_entry(new, watch_fields)["fields"]
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
                "inputs": list(inputs) if inputs is not None else [target],
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
    baseline: Mapping[str, Entry],
    snapshot: Mapping[str, Entry],
    watch_fields: Sequence[str],
    *,
    inputs_of: Callable[[str], Sequence[str]] | None = None,
) -> Evaluation:
    """Compare a snapshot with the baseline.

    :param baseline: target -> entry, as stored.
    :param snapshot: target -> entry, as fetched now (targets without data absent).
    :param watch_fields: the watched fields.
    :param inputs_of: target -> the user's original input strings (default: the target itself).
    :return: the :class:`Evaluation`.
    """
    changes: list[Change] = []
    additions: Snapshot = {}
    for target, raw in snapshot.items():
        entry = normalise_entry(raw, watch_fields)
        old = baseline.get(target)
        if old is None:
            additions[target] = entry
            continue
        inputs = inputs_of(target) if inputs_of is not None else None
        changes.extend(diff_entries(target, old, entry, watch_fields, inputs=inputs))
        old_fields = normalise_entry(old, watch_fields)["fields"]
        missing = {name: value for name, value in entry["fields"].items() if name not in old_fields}
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


@dataclass
class Step:
    """One check of a watch against its per-target baseline (:func:`advance`).

    :ivar changes: every change of a target that is watched now and was watched before.
    :ivar values: the next baseline: exactly the targets watched now that ever had data, each with
        its last seen normal values (the new ones where there was data, the stored ones where
        there was none); targets no longer watched and fields no longer watched are gone.
    :ivar first_seen: targets watched now that had no stored values (their first values are stored;
        no change is reported for them).
    :ivar no_data: targets watched now without data this time (their stored values are kept).
    :ivar dropped: stored targets no longer watched (forgotten).
    """

    changes: list[Change]
    values: Snapshot
    first_seen: list[str]
    no_data: list[str]
    dropped: list[str]


def advance(
    baseline: Mapping[str, Entry],
    snapshot: Mapping[str, Entry],
    targets: Sequence[str],
    watch_fields: Sequence[str],
    *,
    inputs_of: Callable[[str], Sequence[str]] | None = None,
) -> Step:
    """Compare one check's snapshot with the per-target baseline and give the next baseline.

    Each target is compared with ITS OWN stored values, so editing the list (adding, removing,
    reordering targets) never hides a change of a target that stayed, a new target's first values
    are stored without a change, and a removed target keeps nothing that could alert later.

    :param baseline: target -> stored entry (any stored spelling of the values: they are read
        through :func:`normalise_value`).
    :param snapshot: target -> entry fetched now (targets without data absent).
    :param targets: the normalised targets watched now, in order (changes follow this order).
    :param watch_fields: the watched fields.
    :param inputs_of: target -> the user's original input strings (default: the target itself).
    :return: the :class:`Step`.
    """
    changes: list[Change] = []
    values: Snapshot = {}
    first_seen: list[str] = []
    no_data: list[str] = []
    for target in targets:
        stored = baseline.get(target)
        old = normalise_entry(stored, watch_fields) if stored is not None else None
        fetched = snapshot.get(target)
        new = normalise_entry(fetched, watch_fields) if fetched is not None else None
        if new is None:
            no_data.append(target)
            if old is not None:
                values[target] = old
            continue
        if old is None:
            first_seen.append(target)
            values[target] = new
            continue
        inputs = inputs_of(target) if inputs_of is not None else None
        changes.extend(diff_entries(target, old, new, watch_fields, inputs=inputs))
        values[target] = {
            "url": new.get("url") or old.get("url"),
            "fields": {**old["fields"], **new["fields"]},
        }
    watched = set(targets)
    dropped = [target for target in baseline if target not in watched]
    return Step(changes, values, first_seen, no_data, dropped)


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


def given_as(change: Mapping[str, Any]) -> str:
    """The user's own spellings of the changed target, when they differ from it, else ``""``.

    :return: e.g. ``'www.Example.com/a, https://example.com/a/'``.
    """
    inputs = [str(text) for text in change.get("inputs") or () if text != change.get("target")]
    return ", ".join(inputs)


def change_line(change: Mapping[str, Any]) -> str:
    """One readable line: ``https://x.com/a  broken_backlinks: 3 -> 5 (+2, broken_backlinks_increased)``,
    followed by `` [given as: X.com/a]`` when the user wrote the target another way."""
    delta = change.get("delta")
    note = f"{delta:+g}, {change['kind']}" if _is_number(delta) else change["kind"]
    spelled = given_as(change)
    return (
        f"{change['url']}  {change['field']}: {_shown(change['old'])} -> {_shown(change['new'])} ({note})"
        + (f" [given as: {spelled}]" if spelled else "")
    )


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
            for value in (
                c["url"],
                given_as(c),
                c["field"],
                c["old"],
                c["new"],
                c["kind"],
                c.get("delta"),
            )
        )
        + "</tr>"
        for c in shown
    )
    html_body = (
        f"<p>{html.escape(subject)}</p>"
        "<table><tr><th>page</th><th>given as</th><th>field</th><th>old</th><th>new</th><th>kind</th>"
        "<th>delta</th></tr>"
        f"{rows}</table>" + (f"<p>... and {more} more</p>" if more else "")
    )
    return {"subject": subject, "text": "\n".join(lines), "html": html_body}
