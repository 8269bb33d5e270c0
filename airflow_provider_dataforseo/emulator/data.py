"""Deterministic synthetic items of ``POST /v3/backlinks/bulk_pages_summary/live``.

Pure module: no FastAPI, no network, no clock. The item fields and their meaning come from the
endpoint's doc (``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/``, "items");
the shapes the API is known to send (``""`` keys, dotted TLD keys, ``null`` maps, the date format)
from the API reference notes gathered for this provider (help-center and client sources).

Determinism: every number is drawn from :class:`random.Random` instances seeded with SHA-256
digests of the inputs (never Python's salted ``hash()``), so the same
``(target, include_subdomains, rank_scale)`` gives a byte-identical item in every process.
Streams are keyed by the target with its scheme and host lowercased (:func:`canonical`). Two
streams are used so that the item stays internally consistent across options:

- the *base* stream, seeded by the target alone, draws the site's size and every ratio, so that
  ``include_subdomains=True`` multiplies a domain's counts by a factor > 1 and can only raise
  them, and ``rank_scale`` only rescales the two rank fields (``one_hundred`` = ``one_thousand``
  / 10, rounded);
- the *detail* stream, seeded by ``(target, include_subdomains)``, draws the six
  ``referring_links_*`` breakdowns.

``include_subdomains`` only matters for domain targets: a page's item ignores it, as a page has
no subdomains.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator import clock
from airflow_provider_dataforseo.targets import main_domain, target_host

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: ``type`` of every item (endpoint doc, ``items[].type``).
ITEM_TYPE: Final = "backlinks_page_summary"
#: The emulator's epoch, UTC: every item is drawn as it stands on this day (all dates before it),
#: so data do not drift with the wall clock; a later simulated date (``as_of``) evolves the items
#: from here with :mod:`.clock`.
DATA_AS_OF: Final = datetime(2026, 11, 1, tzinfo=timezone.utc)
#: Share of targets the emulated database does not know (no item at all), 0-1.
UNKNOWN_SHARE: Final = 0.03
#: Share of items with backlinks that also carry a ``lost_date``, 0-1 (with the pages whose every
#: backlink is lost, about 10 % of page items have one).
LOST_SHARE: Final = 0.07
#: Share of ``referring_links_*`` maps sent as ``null``, 0-1 (each map independently).
NULL_MAP_SHARE: Final = 0.05
#: Largest count the emulator emits (a very large site).
MAX_COUNT: Final = 20_000_000_000

_DATE_OUT_FORMAT: Final = "%Y-%m-%d %H:%M:%S +00:00"
_SECONDS_PER_DAY: Final = 86_400

# Priors of the keys of the referring_links_* maps (key, relative weight). Values of
# ``referring_links_types`` are those the endpoint doc lists.
_TLD_KEYS: Final[tuple[tuple[str, float], ...]] = (
    ("com", 40.0), ("org", 8.0), ("net", 7.0), ("de", 4.0), ("co.uk", 4.0), ("ru", 3.0),
    ("io", 3.0), ("fr", 2.0), ("info", 2.0), ("com.au", 2.0), ("nl", 2.0), ("it", 2.0),
    ("jp", 2.0), ("es", 1.0), ("pl", 1.0), ("com.br", 1.0), ("in", 1.0), ("ca", 1.0),
    ("blogspot.com", 1.0), ("edu", 1.0), ("gov", 0.5), ("", 0.5),
)  # fmt: skip
_TYPE_KEYS: Final[tuple[tuple[str, float], ...]] = (
    ("anchor", 60.0), ("image", 12.0), ("link", 8.0), ("redirect", 6.0), ("canonical", 5.0),
    ("alternate", 4.0), ("meta", 2.0),
)  # fmt: skip
_PLATFORM_KEYS: Final[tuple[tuple[str, float], ...]] = (
    ("cms", 30.0), ("blogs", 25.0), ("organization", 15.0), ("unknown", 10.0),
    ("message-boards", 8.0), ("ecommerce", 8.0), ("news", 6.0), ("wikis", 3.0), ("", 5.0),
)  # fmt: skip
_SEMANTIC_KEYS: Final[tuple[tuple[str, float], ...]] = (
    ("", 40.0), ("article", 20.0), ("section", 12.0), ("footer", 10.0), ("main", 6.0),
    ("header", 5.0), ("aside", 4.0), ("nav", 3.0), ("summary", 1.0),
)  # fmt: skip
_COUNTRY_KEYS: Final[tuple[tuple[str, float], ...]] = (
    ("WW", 30.0), ("US", 20.0), ("", 12.0), ("DE", 6.0), ("GB", 6.0), ("FR", 4.0), ("RU", 4.0),
    ("NL", 3.0), ("IN", 3.0), ("JP", 3.0), ("CA", 3.0), ("AU", 2.0), ("BR", 2.0), ("ES", 2.0),
    ("IT", 2.0), ("PL", 2.0), ("CN", 2.0), ("UA", 1.0), ("SE", 1.0), ("CH", 1.0),
)  # fmt: skip
#: Link attributes and the share range of backlinks carrying each (nofollow comes from the base
#: stream's nofollow ratio).
_ATTRIBUTE_SHARES: Final[tuple[tuple[str, float], ...]] = (
    ("noopener", 0.30),
    ("noreferrer", 0.20),
    ("ugc", 0.05),
    ("sponsored", 0.03),
    ("external", 0.02),
)


def _digest(*parts: object) -> bytes:
    """SHA-256 of the parts' ``repr`` (stable for ``str``, ``bool``, ``int`` and ``None``)."""
    return hashlib.sha256("\x1f".join(repr(part) for part in parts).encode("utf-8")).digest()


def _rng(*parts: object) -> random.Random:
    """A :class:`random.Random` seeded by the SHA-256 digest of ``parts``."""
    return random.Random(int.from_bytes(_digest(*parts)[:16], "big"))


def _unit(*parts: object) -> float:
    """A stable number in ``[0, 1)`` from the SHA-256 digest of ``parts``."""
    return int.from_bytes(_digest(*parts)[:8], "big") / 2**64


def is_domain_target(target: str) -> bool:
    """Whether a target is a domain or subdomain (no scheme) rather than a page URL."""
    return "://" not in target


def canonical(target: str) -> str:
    """The key the synthetic data are drawn from: the target with its scheme and host lowercased.

    ``Example.COM`` and ``example.com`` are the same site (host names are case-insensitive), so
    they get the same numbers; a page's path and query keep their case. ``url`` still echoes
    the target as sent.
    """
    if is_domain_target(target):
        return target.lower()
    scheme, _, rest = target.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.lower()}{slash}{path}"


def is_known(target: str) -> bool:
    """Whether the emulated database knows ``target`` (about 97 % of targets, fixed per target).

    :param target: the target as sent.
    :return: ``False`` for the ~3 % (:data:`UNKNOWN_SHARE`) that get no item at all.
    """
    return _unit("known", canonical(target)) >= UNKNOWN_SHARE


def order_key(target: str) -> str:
    """Sort key of the items in a reply: a hash of the target, unrelated to the request order.

    The real API does not promise the request's order (reference notes, "Items carry url"), so
    the emulator never keeps it: clients must match items by ``url``.
    """
    return _digest("order", target).hex()


def _part(total: int, ratio: float) -> int:
    """``floor(total * ratio)``, at least 1 when ``total`` is positive (monotone in ``total``)."""
    if total <= 0:
        return 0
    return min(total, max(1, math.floor(total * ratio)))


def _rank_1000(referring_main_domains: int, jitter: float) -> int:
    """A 0-1000 rank growing with the log of the referring main domains."""
    if referring_main_domains <= 0:
        return 0
    scaled = math.pow(math.log10(1 + referring_main_domains) / 6.5, 1.15) * jitter
    return max(1, min(1000, round(1000 * scaled)))


def _scale_rank(rank_1000: int, rank_scale: str) -> int:
    """A 0-1000 rank on the requested scale (endpoint doc, ``rank_scale``)."""
    return round(rank_1000 / 10) if rank_scale == "one_hundred" else rank_1000


def _format_date(moment: datetime) -> str:
    """``"2019-11-15 12:57:46 +00:00"``: the API's date format, UTC (endpoint doc, ``first_seen``)."""
    return moment.astimezone(timezone.utc).strftime(_DATE_OUT_FORMAT)


class _Profile:
    """The base-stream facts of one target: counts, ranks' jitter and dates.

    :param target: the target as sent (page URL or domain).
    :param wide: whether subdomains are included (only ever ``True`` for domain targets).
    """

    def __init__(self, target: str, *, wide: bool) -> None:
        base = _rng("base", canonical(target))
        is_domain = is_domain_target(target)
        host = target_host(target).lower()
        is_main = is_domain and main_domain(host) in (host, None)
        mu, sigma = (8.0, 2.3) if is_main else (6.0, 2.3) if is_domain else (2.2, 2.0)
        # every draw happens whatever the branch, so the stream stays aligned across options
        size = base.lognormvariate(mu, sigma)
        no_links = base.random() < (0.0 if is_domain else 0.10)
        widen = 1.0 + base.lognormvariate(-0.7, 0.8)
        r_pages, r_domains, r_main = (
            base.uniform(0.35, 0.95),
            base.betavariate(1.3, 5.0),
            base.uniform(0.8, 1),
        )
        r_ips, r_subnets = base.uniform(0.55, 0.98), base.uniform(0.5, 0.95)
        r_nofollow = base.betavariate(2.0, 5.0)
        j_pages, j_domains, j_main = base.uniform(0.7, 1), base.uniform(0.7, 1), base.uniform(0.7, 1)
        r_broken, r_broken_pages = base.betavariate(0.8, 25.0), base.uniform(0.0, 2.0)
        self.nofollow_share = r_nofollow
        self.spam_score = math.floor(100 * base.betavariate(1.3, 7.0))
        self.rank_jitter = base.uniform(0.92, 1.08)
        age_days = base.uniform(365, 3650) if is_domain else base.uniform(1, 2500)
        self.first_seen = DATA_AS_OF - timedelta(days=age_days, seconds=base.randrange(_SECONDS_PER_DAY))
        lost_roll, lost_fraction = base.random(), base.uniform(0.05, 1.0)
        page_broken = base.random() < 0.04

        backlinks = 0 if no_links else max(1, math.floor(size * (widen if wide else 1.0)))
        self.backlinks = min(MAX_COUNT, backlinks)
        self.referring_pages = _part(self.backlinks, r_pages)
        self.referring_domains = _part(self.referring_pages, r_domains)
        self.referring_main_domains = _part(self.referring_domains, r_main)
        self.referring_ips = _part(self.referring_domains, r_ips)
        self.referring_subnets = _part(self.referring_ips, r_subnets)
        self.referring_pages_nofollow = math.floor(self.referring_pages * r_nofollow * j_pages)
        self.referring_domains_nofollow = math.floor(self.referring_domains * r_nofollow * j_domains)
        self.referring_main_domains_nofollow = math.floor(self.referring_main_domains * r_nofollow * j_main)
        self.broken_backlinks = math.floor(self.backlinks * r_broken)
        if is_domain:
            self.broken_pages = math.floor(math.sqrt(self.backlinks) * r_broken_pages)
        else:
            self.broken_pages = int(page_broken)
        # a page whose every backlink is gone: either never seen (no dates) or seen then lost
        self.seen = self.backlinks > 0 or lost_roll < 0.4
        self.lost = self.seen and (self.backlinks == 0 or lost_roll < LOST_SHARE)
        span = DATA_AS_OF - self.first_seen
        self.lost_date = self.first_seen + span * lost_fraction


@lru_cache(maxsize=4096)
def _main_domain_rank_1000(domain: str) -> int:
    """Rank (0-1000) of a main domain: its own item's rank with subdomains included."""
    profile = _Profile(domain, wide=True)
    return _rank_1000(profile.referring_main_domains, profile.rank_jitter)


def _weighted_keys(rng: random.Random, pool: Sequence[tuple[str, float]], count: int) -> list[str]:
    """``count`` distinct keys drawn by weight without replacement (Efraimidis-Spirakis)."""
    scored = sorted(pool, key=lambda kv: rng.random() ** (1.0 / kv[1]), reverse=True)
    return [key for key, _ in scored[:count]]


def _breakdown(rng: random.Random, total: int, pool: Sequence[tuple[str, float]]) -> dict[str, int] | None:
    """Split ``total`` links over some keys of ``pool``: a ``str -> int`` map summing to ``total``.

    Sent as ``None`` for :data:`NULL_MAP_SHARE` of the calls; ``{}`` when ``total`` is 0.
    The map is ordered by count, largest first.
    """
    if rng.random() < NULL_MAP_SHARE:
        return None
    n_keys = min(len(pool), total, 1 + int(math.log2(1 + total) * rng.uniform(0.4, 1.0)))
    if n_keys <= 0:
        return {}
    keys = _weighted_keys(rng, pool, n_keys)
    prior = dict(pool)
    weights = [rng.gammavariate(1.5, 1.0) * prior[key] + 1e-9 for key in keys]
    spare, weight_sum = total - n_keys, sum(weights)
    counts = [1 + math.floor(spare * w / weight_sum) for w in weights]
    counts[max(range(n_keys), key=weights.__getitem__)] += total - sum(counts)
    ordered = sorted(zip(keys, counts, strict=True), key=lambda kv: (-kv[1], kv[0]))
    return dict(ordered)


def _attributes(rng: random.Random, backlinks: int, nofollow_share: float) -> dict[str, int] | None:
    """``referring_links_attributes``: links per attribute (attributes overlap, no fixed sum)."""
    if rng.random() < NULL_MAP_SHARE:
        return None
    shares = [("nofollow", nofollow_share)]
    shares += [(name, rng.uniform(0.0, top)) for name, top in _ATTRIBUTE_SHARES]
    counts = {name: math.floor(backlinks * share) for name, share in shares}
    return {name: count for name, count in sorted(counts.items(), key=lambda kv: -kv[1]) if count > 0}


def summary_item(
    target: str,
    *,
    include_subdomains: bool = True,
    rank_scale: str = "one_thousand",
    as_of: date | None = None,
) -> dict[str, Any] | None:
    """The emulated ``backlinks_page_summary`` item of one target, or ``None`` when unknown.

    Field names are exactly those of the endpoint doc ("items"). Consistency guaranteed:
    ``referring_main_domains <= referring_domains <= referring_pages <= backlinks``, every
    ``*_nofollow`` count <= its total, ``broken_backlinks <= backlinks``, ``lost_date`` after
    ``first_seen``, ranks within the scale. A page may have 0 backlinks (then ``first_seen`` may be
    ``None``).

    :param target: a page URL (``https://x.com/a``) or a domain (``x.com``), echoed as ``url``.
    :param include_subdomains: the task's ``include_subdomains``; for domains ``True`` gives
        larger counts than ``False``; ignored for pages.
    :param rank_scale: ``"one_thousand"`` (ranks 0-1000) or ``"one_hundred"`` (0-100).
    :param as_of: the simulated date (UTC day). ``None`` or a day up to :data:`DATA_AS_OF`
        (2026-11-01) gives the epoch's item; a later day gives the item evolved by
        :func:`.clock.evolve_item` (backlinks gained or lost, ``lost_date`` set or cleared,
        ``broken_backlinks`` changed for a deterministic share of items).
    :return: the item (a JSON-ready dict; dates ``"YYYY-MM-DD HH:MM:SS +00:00"`` UTC), or ``None``
        for the ~3 % of targets the emulated database does not know.
    :raises ValueError: for an unknown ``rank_scale``.
    """
    if rank_scale not in api.RANK_SCALES:
        raise ValueError(f"rank_scale must be one of {api.RANK_SCALES}, not {rank_scale!r}")
    if not is_known(target):
        return None
    wide = include_subdomains and is_domain_target(target)
    profile = _Profile(target, wide=wide)
    detail = _rng("detail", canonical(target), wide)
    host = target_host(target).lower()
    main = main_domain(host) or host
    links = profile.backlinks
    item = {
        "type": ITEM_TYPE,
        "url": target,
        "rank": _scale_rank(_rank_1000(profile.referring_main_domains, profile.rank_jitter), rank_scale),
        "main_domain_rank": _scale_rank(_main_domain_rank_1000(main), rank_scale),
        "backlinks": links,
        "first_seen": _format_date(profile.first_seen) if profile.seen else None,
        "lost_date": _format_date(profile.lost_date) if profile.lost else None,
        "backlinks_spam_score": profile.spam_score if links else 0,
        "broken_backlinks": profile.broken_backlinks,
        "broken_pages": profile.broken_pages,
        "referring_domains": profile.referring_domains,
        "referring_domains_nofollow": profile.referring_domains_nofollow,
        "referring_main_domains": profile.referring_main_domains,
        "referring_main_domains_nofollow": profile.referring_main_domains_nofollow,
        "referring_ips": profile.referring_ips,
        "referring_subnets": profile.referring_subnets,
        "referring_pages": profile.referring_pages,
        "referring_pages_nofollow": profile.referring_pages_nofollow,
        "referring_links_tld": _breakdown(detail, links, _TLD_KEYS),
        "referring_links_types": _breakdown(detail, links, _TYPE_KEYS),
        "referring_links_attributes": _attributes(detail, links, profile.nofollow_share),
        "referring_links_platform_types": _breakdown(detail, links, _PLATFORM_KEYS),
        "referring_links_semantic_locations": _breakdown(detail, links, _SEMANTIC_KEYS),
        "referring_links_countries": _breakdown(detail, links, _COUNTRY_KEYS),
    }
    if as_of is None or as_of <= DATA_AS_OF.date():
        return item
    return clock.evolve_item(item, canonical(target), epoch=DATA_AS_OF.date(), as_of=as_of)


def summary_items(
    targets: Iterable[str],
    *,
    include_subdomains: bool = True,
    rank_scale: str = "one_thousand",
    as_of: date | None = None,
) -> list[dict[str, Any]]:
    """The items of one task: one per distinct known target, in :func:`order_key` order.

    :param targets: the task's targets as sent (already validated by the caller).
    :param include_subdomains: see :func:`summary_item`.
    :param rank_scale: see :func:`summary_item`.
    :param as_of: see :func:`summary_item` (the simulated date).
    :return: the items; unknown targets are left out, duplicates answered once.
    """
    items = []
    for target in sorted(dict.fromkeys(targets), key=order_key):
        item = summary_item(target, include_subdomains=include_subdomains, rank_scale=rank_scale, as_of=as_of)
        if item is not None:
            items.append(item)
    return items
