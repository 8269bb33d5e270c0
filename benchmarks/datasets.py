"""Deterministic benchmark target lists drawn from ``example_dags/data/top-domains-20k.csv``.

Two shapes:

- ``realistic``: a few large sites with many pages and a long tail of small ones. Site ``r`` (the
  r-th domain of a random sample of the top-20k list) gets a share of the targets proportional to
  ``1/r`` (Zipf, s=1), at least one. A site's targets are its domain, a few subdomains and pages
  (``https://domain/...``, ``https://www.domain/...``), listed together, sites one after another
  in random order, the way crawl exports and site lists usually arrive.
- ``adversarial``: the same kind of sites, but their targets interleaved round-robin, so that any
  1000 consecutive targets span far more than 100 main domains.

Both use ``n // 10`` sites (at most 20,000), so the two terms of the lower bound
``max(ceil(n/1000), ceil(main_domains/100))`` are about equal and both limits bind.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
#: The real top-sites list shipped with the example DAGs (``rank,domain``, no header).
DOMAINS_CSV = REPO / "example_dags" / "data" / "top-domains-20k.csv"
SHAPES = ("realistic", "adversarial")
_SECTIONS = ("blog", "news", "products", "docs", "help", "about", "category", "p", "en", "shop")


def load_domains(path: Path = DOMAINS_CSV) -> list[str]:
    """The domains of the top-sites list, in rank order."""
    with path.open(encoding="utf-8") as handle:
        return [line.strip().split(",", 1)[1] for line in handle if line.strip()]


def _site_sizes(n: int, sites: int) -> list[int]:
    """Zipf (s=1) sizes summing to exactly ``n``, each >= 1, largest first."""
    weights = [1.0 / rank for rank in range(1, sites + 1)]
    scale = (n - sites) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    short = n - sum(sizes)
    for i in range(short):  # hand out the rounding remainder to the largest sites
        sizes[i % sites] += 1
    return sizes


def _site_targets(domain: str, size: int, rng: random.Random) -> list[str]:
    """``size`` distinct targets of one site: the domain, then subdomains and pages."""
    out = [domain]
    subdomains = [f"blog.{domain}", f"shop.{domain}", f"m.{domain}"]
    i = 0
    while len(out) < size:
        kind = rng.random()
        if kind < 0.01 and subdomains:
            out.append(subdomains.pop())
            continue
        host = f"www.{domain}" if kind < 0.3 else domain
        section = _SECTIONS[rng.randrange(len(_SECTIONS))]
        out.append(f"https://{host}/{section}/{i}-{rng.randrange(10**6):06d}")
        i += 1
    return out


def generate(n: int, shape: str = "realistic", *, seed: int = 5) -> list[str]:
    """``n`` distinct targets of the given shape (deterministic for ``(n, shape, seed)``).

    :param n: number of targets (>= 10).
    :param shape: ``"realistic"`` or ``"adversarial"`` (see the module doc).
    :param seed: seed of the sampling.
    :return: the targets in input order.
    :raises ValueError: for an unknown shape or ``n < 10``.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")
    if n < 10:
        raise ValueError(f"n must be >= 10, not {n}")
    rng = random.Random(f"{seed}:{n}:{shape}")
    domains = load_domains()
    n_sites = min(len(domains), n // (20 if shape == "realistic" else 10))
    sizes = _site_sizes(n, n_sites)
    chosen = rng.sample(domains, n_sites)
    sites = [_site_targets(domain, size, rng) for domain, size in zip(chosen, sizes, strict=True)]
    if shape == "realistic":
        rng.shuffle(sites)
        return [target for site in sites for target in site]
    return list(_interleave(sites))


def _interleave(sites: list[list[str]]) -> Iterator[str]:
    """Round-robin over the sites: one target of each site in turn."""
    depth = max(len(site) for site in sites)
    for i in range(depth):
        for site in sites:
            if i < len(site):
                yield site[i]
