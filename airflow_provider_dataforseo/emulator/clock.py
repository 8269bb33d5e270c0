"""The emulator's simulated clock: how an item evolves as the simulated date advances.

Pure module: no FastAPI, no network, no wall clock. :mod:`.data` draws every item as it stands on
the *epoch* (:data:`~airflow_provider_dataforseo.emulator.data.DATA_AS_OF`, 2026-11-01 UTC);
:func:`evolve_item` moves it to a later simulated date.

Model. Each page or domain (keyed by :func:`~airflow_provider_dataforseo.emulator.data.canonical`)
has its own sequence of events, drawn from a :class:`random.Random` seeded with the SHA-256 digest
of the key: the gaps between events are exponential with a mean of ``1 / EVENT_RATE`` days, so on
any day about :data:`EVENT_RATE` (8 %) of the items change. An event is one of

- ``lose``: 5-50 % of the backlinks disappear and ``lost_date`` becomes the event's time (a
  ``null`` -> date change the first time, a date -> later date change after that);
- ``gain``: 5-60 % more backlinks;
- ``recover``: a lost item gets backlinks back and ``lost_date`` returns to ``null`` (an item that
  was not lost gains backlinks instead);
- ``broken``: ``broken_backlinks`` goes up or down by at least one.

The state on date D applies exactly the events of the days after the epoch up to D, in order, so
the same date always gives the same item (in every process), and advancing the date only adds
events. Dates on or before the epoch give the epoch's item. Items without backlinks (a page never
linked, or one whose every backlink is gone) do not evolve.

Counts keep their relations: every count is scaled by the same factor with a monotone rounding
(``0`` stays ``0``, a positive count stays >= 1), the ``referring_links_*`` breakdowns still add up
to ``backlinks``, ``broken_backlinks <= backlinks``, ``lost_date`` after ``first_seen``. Ranks,
spam score, ``broken_pages`` and ``first_seen`` are left as they are.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Final

#: Expected events per item per simulated day (the share of items that change on a given day).
EVENT_RATE: Final = 0.08
#: Kinds of events and their relative weights.
EVENT_KINDS: Final[tuple[tuple[str, float], ...]] = (
    ("lose", 0.30),
    ("gain", 0.25),
    ("recover", 0.15),
    ("broken", 0.30),
)
#: The latest simulated date accepted is this many days after the epoch (about 10 years).
MAX_DAYS: Final = 3660
#: Bounds of the backlinks multiplier an item can drift to.
MIN_LEVEL: Final = 0.02
MAX_LEVEL: Final = 50.0

#: Counts scaled with the backlinks (their order relations survive a monotone scaling).
COUNT_FIELDS: Final = (
    "backlinks",
    "referring_pages",
    "referring_pages_nofollow",
    "referring_domains",
    "referring_domains_nofollow",
    "referring_main_domains",
    "referring_main_domains_nofollow",
    "referring_ips",
    "referring_subnets",
)
#: Breakdown maps whose values add up to ``backlinks``.
SUM_MAPS: Final = (
    "referring_links_tld",
    "referring_links_types",
    "referring_links_platform_types",
    "referring_links_semantic_locations",
    "referring_links_countries",
)
#: Breakdown map whose values overlap (a link can carry several attributes).
ATTRIBUTES_MAP: Final = "referring_links_attributes"

_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S %z"
_DATE_OUT_FORMAT: Final = "%Y-%m-%d %H:%M:%S +00:00"
_SECONDS_PER_DAY: Final = 86_400


@dataclass(frozen=True)
class Event:
    """One change of an item.

    :ivar moment: when it happened, UTC (on a day after the epoch).
    :ivar kind: ``"lose"``, ``"gain"``, ``"recover"`` or ``"broken"``.
    :ivar roll: a number in ``[0, 1)`` that sets its size (and, for ``broken``, its sign).
    """

    moment: datetime
    kind: str
    roll: float


def check_date(as_of: date, epoch: date) -> str | None:
    """Why ``as_of`` cannot be a simulated date, or ``None`` when it can.

    :param as_of: the wanted simulated date.
    :param epoch: the date the data are drawn on (the earliest simulated date).
    :return: a message naming the bad value and the accepted range, or ``None``.
    """
    latest = epoch + timedelta(days=MAX_DAYS)
    if not epoch <= as_of <= latest:
        return (
            f"date {as_of.isoformat()} is outside the simulated range "
            f"{epoch.isoformat()} to {latest.isoformat()}"
        )
    return None


def _kind(roll: float) -> str:
    total = sum(weight for _, weight in EVENT_KINDS)
    point = roll * total
    for kind, weight in EVENT_KINDS:
        if point < weight:
            return kind
        point -= weight
    return EVENT_KINDS[-1][0]


def events(key: str, *, epoch: date, until: date) -> list[Event]:
    """The events of one item from the day after ``epoch`` up to ``until`` included, in order.

    :param key: the item's key (its canonical target).
    :param epoch: the date the item is drawn on.
    :param until: the simulated date.
    :return: the events (empty when ``until <= epoch``).
    """
    if until <= epoch:
        return []
    digest = hashlib.sha256(f"clock\x1f{key}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:16], "big"))
    start = datetime.combine(epoch, time(0), tzinfo=timezone.utc)
    out: list[Event] = []
    elapsed = 0.0
    while True:
        elapsed += rng.expovariate(EVENT_RATE)
        # every draw happens for every event, so the stream never depends on ``until``
        kind_roll, size_roll, second = rng.random(), rng.random(), rng.randrange(_SECONDS_PER_DAY)
        day = epoch + timedelta(days=max(1, math.ceil(elapsed)))
        if day > until:
            return out
        moment = start + timedelta(days=(day - epoch).days, seconds=second)
        out.append(Event(moment=moment, kind=_kind(kind_roll), roll=size_roll))


def scale_count(value: int, level: float) -> int:
    """``value`` times ``level``, rounded down but never from a positive count to 0 (monotone)."""
    if value <= 0:
        return 0
    return max(1, math.floor(value * level))


@dataclass(frozen=True)
class ItemState:
    """Where an item stands on a simulated date.

    :ivar level: its backlinks relative to the epoch (``1.0`` = unchanged).
    :ivar lost_at: its ``lost_date`` (UTC), or ``None`` while nothing is lost.
    :ivar broken: its ``broken_backlinks`` (before the ``<= backlinks`` cap).
    """

    level: float
    lost_at: datetime | None
    broken: int


def evolve(
    key: str,
    *,
    epoch: date,
    as_of: date,
    backlinks: int,
    lost_at: datetime | None,
    broken: int,
) -> ItemState:
    """Apply an item's events up to ``as_of`` to its epoch values.

    :param key: the item's key (its canonical target).
    :param epoch: the date the values are from.
    :param as_of: the simulated date.
    :param backlinks: ``backlinks`` on the epoch.
    :param lost_at: ``lost_date`` on the epoch (UTC), or ``None``.
    :param broken: ``broken_backlinks`` on the epoch.
    :return: the :class:`ItemState` on ``as_of``.
    """
    level = 1.0
    for event in events(key, epoch=epoch, until=as_of):
        if event.kind == "lose":
            level *= 1.0 - (0.05 + 0.45 * event.roll)
            lost_at = event.moment
        elif event.kind == "recover" and lost_at is not None:
            level *= 1.0 + 0.1 * event.roll
            lost_at = None
        elif event.kind in ("gain", "recover"):
            level *= 1.0 + (0.05 + 0.55 * event.roll)
        else:  # broken: up when roll >= 0.5, down otherwise, by at least one
            now = scale_count(backlinks, min(MAX_LEVEL, max(MIN_LEVEL, level)))
            size = abs(event.roll - 0.5) * 2.0
            step = 1 + math.floor(size * max(1.0, now * 0.05))
            broken = max(0, broken + step) if event.roll >= 0.5 else max(0, broken - step)
            broken = min(broken, now)
        level = min(MAX_LEVEL, max(MIN_LEVEL, level))
    return ItemState(level=level, lost_at=lost_at, broken=broken)


def _parse_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, _DATE_FORMAT).astimezone(timezone.utc)
    except ValueError:
        return None


def _scale_sum_map(counts: dict[str, int], level: float, total: int) -> dict[str, int]:
    """Scale a breakdown's values, then give what rounding lost to the largest key (sum = total)."""
    if not counts:
        return {}
    largest = max(counts, key=lambda key: (counts[key], key))
    scaled = {key: math.floor(value * level) for key, value in counts.items()}
    scaled[largest] += total - sum(scaled.values())
    kept = {key: value for key, value in scaled.items() if value > 0}
    return dict(sorted(kept.items(), key=lambda kv: (-kv[1], kv[0])))


def evolve_item(item: dict[str, Any], key: str, *, epoch: date, as_of: date) -> dict[str, Any]:
    """The item as it stands on the simulated date ``as_of`` (a new dict; ``item`` is untouched).

    :param item: the item on ``epoch`` (as :func:`~airflow_provider_dataforseo.emulator.data.summary_item`
        draws it).
    :param key: the item's key (its canonical target).
    :param epoch: the date ``item`` stands on.
    :param as_of: the simulated date; on or before ``epoch`` the item is returned as it is.
    :return: the evolved item, same fields, same types.
    """
    backlinks = item.get("backlinks")
    if as_of <= epoch or not isinstance(backlinks, int) or backlinks <= 0:
        return dict(item)
    broken = item.get("broken_backlinks")
    state = evolve(
        key,
        epoch=epoch,
        as_of=as_of,
        backlinks=backlinks,
        lost_at=_parse_date(item.get("lost_date")),
        broken=broken if isinstance(broken, int) else 0,
    )
    out = dict(item)
    for name in COUNT_FIELDS:
        value = item.get(name)
        if isinstance(value, int):
            out[name] = scale_count(value, state.level)
    total = out["backlinks"]
    for name in SUM_MAPS:
        counts = item.get(name)
        if isinstance(counts, dict):
            out[name] = _scale_sum_map(counts, state.level, total)
    attributes = item.get(ATTRIBUTES_MAP)
    if isinstance(attributes, dict):
        scaled = {name: math.floor(value * state.level) for name, value in attributes.items()}
        out[ATTRIBUTES_MAP] = {name: value for name, value in scaled.items() if value > 0}
    if isinstance(broken, int):
        out["broken_backlinks"] = min(state.broken, total)
    out["lost_date"] = state.lost_at.strftime(_DATE_OUT_FORMAT) if state.lost_at is not None else None
    return out
