"""Regenerate example_dags/data/top_sites_targets.txt, the demo's sample targets.

The 2,000 highest-ranked domains of example_dags/data/top-domains-20k.csv (a public top-sites
ranking, February 2025) that are neither named in example_dags/data/excluded_domains.txt (adult,
piracy, illegal betting, malware/adware) nor match ADULT_PATTERN, each as a domain and as its home
page: 4,000 targets from 2,000 main domains. ``tests/test_demo_targets.py`` checks the shipped file
is exactly what this prints.

Usage: ``python scripts/make_demo_targets.py > example_dags/data/top_sites_targets.txt``
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "example_dags" / "data"
DOMAINS = 2000
#: Domain names that are adult sites by their own name.
ADULT_PATTERN = re.compile(
    r"porn|xxx|(?<!es|us|le)sex|hentai|escort|nude|milf"  # anywhere (not Essex, Sussex, Middlesex)
    r"|(?:^|[.-])(?:xvideos?|xnxx|xhamster|fap|jav\.)"  # at a label's start: not nflxvideo.net
)


def excluded_domains() -> set[str]:
    """The names in excluded_domains.txt (comments and blank lines skipped)."""
    lines = (DATA / "excluded_domains.txt").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}


def is_excluded(domain: str, excluded: set[str]) -> bool:
    return domain in excluded or ADULT_PATTERN.search(domain) is not None


def demo_domains() -> list[str]:
    """The first DOMAINS ranked domains that are not excluded, in rank order."""
    excluded = excluded_domains()
    kept: list[str] = []
    for line in (DATA / "top-domains-20k.csv").read_text(encoding="utf-8").splitlines():
        domain = line.split(",", 1)[1].strip()
        if not is_excluded(domain, excluded):
            kept.append(domain)
            if len(kept) == DOMAINS:
                break
    return kept


def render() -> str:
    domains = demo_domains()
    header = [
        "# Targets for example_dataforseo_bulk_pages_summary: the 2,000 highest-ranked domains of",
        "# top-domains-20k.csv (a public top-sites ranking, February 2025) and their home pages,",
        "# leaving out adult, piracy, illegal-betting and malware/adware sites (excluded_domains.txt",
        "# and an adult keyword pattern; made by scripts/make_demo_targets.py).",
        "# One target per line; blank lines and lines starting with # are skipped.",
        "target",
    ]
    return "\n".join([*header, *domains, *(f"https://{domain}/" for domain in domains)]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
