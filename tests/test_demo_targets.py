"""The demo's sample targets: 2,000 top domains and their home pages, no adult/piracy/malware site."""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from airflow_provider_dataforseo.sources import parse_target_file
from airflow_provider_dataforseo.targets import count_main_domains, normalise_targets
from tests.conftest import REPO

if TYPE_CHECKING:
    from types import ModuleType

DATA = REPO / "example_dags" / "data"


def _generator() -> ModuleType:
    path = REPO / "scripts" / "make_demo_targets.py"
    spec = importlib.util.spec_from_file_location("make_demo_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_demo_targets", module)
    spec.loader.exec_module(module)
    return module


def _shipped() -> list[str]:
    return parse_target_file((DATA / "top_sites_targets.txt").read_text(encoding="utf-8"))


def test_shipped_file_is_what_the_filter_makes() -> None:
    """The file and its documented filter cannot drift apart."""
    assert (DATA / "top_sites_targets.txt").read_text(encoding="utf-8") == _generator().render()


def test_no_excluded_or_adult_named_domain_is_a_target() -> None:
    generator = _generator()
    excluded = generator.excluded_domains()
    hosts = {target.removeprefix("https://").rstrip("/") for target in _shipped()}
    assert not hosts & excluded
    assert [host for host in hosts if generator.ADULT_PATTERN.search(host)] == []
    known_bad = ("pornhub.com", "xvideos.com", "xhamster.com", "onlyfans.com", "chaturbate.com", "hianime.to")
    for known in known_bad:
        assert generator.is_excluded(known, excluded), known


def test_the_filter_keeps_ordinary_sites() -> None:
    generator = _generator()
    excluded = generator.excluded_domains()
    ordinary_sites = (
        "nflxvideo.net",
        "java.com",
        "essex.ac.uk",
        "sussex.ac.uk",
        "middlesex.edu",
        "python.org",
        "wikipedia.org",
        "github.com",
    )
    for ordinary in ordinary_sites:
        assert not generator.is_excluded(ordinary, excluded), ordinary


def test_still_4000_targets_from_2000_main_domains_in_20_requests() -> None:
    """The demo's figures hold: 2,000 domains + 2,000 home pages; 2,000 main domains -> 20 requests."""
    target_set = normalise_targets(_shipped())
    assert len(target_set) == 4000
    assert count_main_domains(target_set.targets) == 2000
