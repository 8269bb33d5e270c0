"""planning.py: chunk groups for mapped tasks, group documents, streaming input, merged manifests."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.planning import (
    DEFAULT_MAX_MAP_LENGTH,
    GROUP_FORMAT,
    MAX_INLINE_TARGETS,
    ChunkGroup,
    group_chunks,
    load_chunk_group,
    merge_manifests,
    normalise_stream,
    plan_chunk_groups,
    write_chunk_groups,
)
from airflow_provider_dataforseo.sources import parse_target_file, read_target_lines
from airflow_provider_dataforseo.targets import (
    count_main_domains,
    normalise_targets,
    target_main_domain,
)
from tests.conftest import REPO

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

DOMAINS = [
    line.split(",", 1)[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
]


def _targets(n: int, n_domains: int, seed: int = 0) -> list[str]:
    """``n`` distinct normalised targets over ``n_domains`` real main domains, shuffled."""
    rng = random.Random(seed)
    domains = DOMAINS[:n_domains]
    out = list(domains[: min(n, n_domains)])
    i = 0
    while len(out) < n:
        out.append(f"https://{domains[rng.randrange(n_domains)]}/p/{i}")
        i += 1
    rng.shuffle(out)
    return out


def _check_groups(groups: Sequence[ChunkGroup], targets: Sequence[str], max_groups: int) -> None:
    """Every target exactly once; groups indexed 0..g-1, at most max_groups; every chunk valid."""
    assert len(groups) <= max_groups
    assert [group.index for group in groups] == list(range(len(groups)))
    flat = [target for group in groups for chunk in group.chunks for target in chunk]
    assert Counter(flat) == Counter(targets)
    for group in groups:
        assert group.chunks
        for chunk in group.chunks:
            assert 1 <= len(chunk) <= api.MAX_TARGETS_PER_REQUEST
            assert count_main_domains(chunk) <= api.MAX_MAIN_DOMAINS_PER_REQUEST
    sizes = [group.requests for group in groups]
    assert max(sizes) - min(sizes) <= 1


# ---------------------------------------------------------------------------------------------
# plan_chunk_groups / group_chunks
# ---------------------------------------------------------------------------------------------


def test_groups_cover_every_target_once_with_valid_chunks_and_the_global_plan() -> None:
    targets = _targets(25_000, 3_000)
    groups = plan_chunk_groups(targets, requests_per_group=4)
    _check_groups(groups, targets, DEFAULT_MAX_MAP_LENGTH)
    chunks = plan_chunks(targets)
    assert len(chunks) == 30  # lower bound max(ceil(25000/1000), ceil(3000/100)) = 30
    assert [chunk for group in groups for chunk in group.chunks] == chunks  # consecutive, in plan order
    assert [group.requests for group in groups] == [4, 4, 4, 4, 4, 4, 3, 3]
    assert sum(group.targets for group in groups) == 25_000


def test_groups_are_deterministic() -> None:
    targets = _targets(8_000, 900, seed=3)
    first = plan_chunk_groups(targets, requests_per_group=3)
    again = plan_chunk_groups(list(targets), requests_per_group=3)
    assert first == again
    assert json.dumps([g.chunks for g in first]) == json.dumps([g.chunks for g in again])


def test_max_groups_caps_the_number_of_mapped_tasks() -> None:
    chunks = [[f"site{i}.example.com"] for i in range(50)]
    groups = group_chunks(chunks, max_groups=7, requests_per_group=1)
    assert [group.requests for group in groups] == [8, 7, 7, 7, 7, 7, 7]
    assert [c for g in groups for c in g.chunks] == chunks
    # 1,500 requests at the default cap of 1024 groups: never more groups than max_map_length
    many = [[f"site{i}.example.com"] for i in range(1500)]
    capped = group_chunks(many, requests_per_group=1)
    assert len(capped) == DEFAULT_MAX_MAP_LENGTH
    assert {g.requests for g in capped} == {1, 2}


def test_one_group_per_chunk_list_never_one_per_url() -> None:
    targets = [f"https://example.com/page/{i}" for i in range(5_000)]  # one main domain
    groups = plan_chunk_groups(targets)
    assert len(groups) == 1
    assert groups[0].requests == 5
    assert groups[0].targets == 5_000


def test_empty_targets_give_no_groups() -> None:
    assert plan_chunk_groups([]) == []
    assert group_chunks([]) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_groups": 0}, "max_groups must be an integer >= 1, got 0"),
        ({"requests_per_group": 0}, "requests_per_group must be an integer >= 1, got 0"),
        ({"requests_per_group": True}, "requests_per_group must be an integer >= 1, got True"),
        ({"max_groups": 2.5}, "max_groups must be an integer >= 1, got 2.5"),
    ],
)
def test_bad_group_limits_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        plan_chunk_groups(["example.com"], **kwargs)
    assert str(err.value) == message


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=1, max_value=6_000),
    n_domains=st.integers(min_value=1, max_value=700),
    seed=st.integers(min_value=0, max_value=10**6),
    max_groups=st.integers(min_value=1, max_value=12),
    requests_per_group=st.integers(min_value=1, max_value=5),
)
def test_group_invariants_hold_for_any_input(
    n: int, n_domains: int, seed: int, max_groups: int, requests_per_group: int
) -> None:
    targets = _targets(n, min(n, n_domains), seed)
    groups = plan_chunk_groups(targets, max_groups=max_groups, requests_per_group=requests_per_group)
    _check_groups(groups, targets, max_groups)
    n_chunks = sum(group.requests for group in groups)
    assert len(groups) == min(max_groups, -(-n_chunks // requests_per_group))


# ---------------------------------------------------------------------------------------------
# Group documents and descriptors
# ---------------------------------------------------------------------------------------------


class _Storage:
    """A dict standing in for object storage."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def write(self, uri: str, text: str) -> None:
        self.files[uri] = text

    def read(self, uri: str) -> str:
        try:
            return self.files[uri]
        except KeyError:
            raise FileNotFoundError(uri) from None


def test_stored_groups_round_trip_with_their_inputs_and_descriptors_stay_small() -> None:
    raw = ["HTTPS://Example.com", "https://example.com/#top", "www.Wikipedia.org", "wikipedia.org"]
    raw += _targets(20_000, 2_000, seed=7)
    normalised = normalise_stream(raw)
    groups = plan_chunk_groups(normalised.targets, requests_per_group=5)
    storage = _Storage()
    descriptors = write_chunk_groups(
        groups, normalised.extra_inputs, groups_uri="memory://plan/groups/", write_text=storage.write
    )
    assert len(plan_chunks(normalised.targets)) == 21  # 20,002 targets: max(ceil(20002/1000), ...) = 21
    assert [d["uri"] for d in descriptors] == [f"memory://plan/groups/group-{i:05d}.json" for i in range(5)]
    assert [d["requests"] for d in descriptors] == [5, 4, 4, 4, 4]
    assert descriptors[0] == {
        "uri": "memory://plan/groups/group-00000.json",
        "group": 0,
        "groups": 5,
        "requests": 5,
        "targets": groups[0].targets,
    }
    # 20,002 targets in XCom: 5 descriptors, well under 1 KB (the URLs themselves are ~800 KB)
    assert len(json.dumps(descriptors)) < 1_000
    seen: list[str] = []
    for descriptor, group in zip(descriptors, groups, strict=True):
        target_set, chunks, info = load_chunk_group(descriptor, storage.read)
        assert chunks == group.chunks
        assert info == {"group": group.index, "groups": 5, "uri": descriptor["uri"]}
        seen.extend(target_set.targets)
        for target in target_set.targets:  # original inputs survive the trip (fetch reads them so)
            assert target_set.inputs.get(target, [target]) == normalised.inputs_of(target)
    assert seen == [t for g in groups for c in g.chunks for t in c]
    document = json.loads(storage.files[descriptors[0]["uri"]])
    assert document["format"] == GROUP_FORMAT
    everywhere = {t: i for g in groups for c in g.chunks for t in c for i in [g.index]}
    group_of_example = everywhere["https://example.com/"]
    stored = json.loads(storage.files[descriptors[group_of_example]["uri"]])["inputs"]
    assert stored["https://example.com/"] == ["HTTPS://Example.com", "https://example.com/#top"]
    assert len(stored) == 2  # only targets given in another form carry their inputs


def test_inline_groups_for_small_plans_and_refused_for_big_ones() -> None:
    normalised = normalise_stream(["HTTPS://Example.com", "example.org", "example.org"])
    groups = plan_chunk_groups(normalised.targets)
    inline = write_chunk_groups(groups, normalised.extra_inputs, groups_uri=None)
    assert inline == [
        {
            "format": GROUP_FORMAT,
            "group": 0,
            "groups": 1,
            "requests": 1,
            "targets": 2,
            "chunks": [["https://example.com/", "example.org"]],
            "inputs": {
                "https://example.com/": ["HTTPS://Example.com"],
            },
        }
    ]
    target_set, chunks, info = load_chunk_group(inline[0], _Storage().read)
    assert target_set.targets == ["https://example.com/", "example.org"]
    assert chunks == [["https://example.com/", "example.org"]]
    assert info == {"group": 0, "groups": 1, "uri": None}
    big = plan_chunk_groups(_targets(MAX_INLINE_TARGETS + 1, 50))
    with pytest.raises(
        ValueError, match=f"{MAX_INLINE_TARGETS + 1} targets are too many to pass through XCom"
    ):
        write_chunk_groups(big, {}, groups_uri=None)


def test_a_group_file_uri_or_json_text_is_accepted() -> None:
    storage = _Storage()
    groups = plan_chunk_groups(["example.com", "https://example.org/a"])
    [descriptor] = write_chunk_groups(groups, {}, groups_uri="memory://g", write_text=storage.write)
    assert load_chunk_group(descriptor["uri"], storage.read)[1] == groups[0].chunks
    assert load_chunk_group(json.dumps(descriptor), storage.read)[1] == groups[0].chunks


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"chunks": [], "inputs": {}}, "'chunks' must be a non-empty list"),
        ({"chunks": [["a.com", 3]]}, "request 1 must be a non-empty list of target strings"),
        (
            {"chunks": [[f"site{i}.example{i}.com" for i in range(101)]]},
            "request 1 has 101 targets from 101 main domains",
        ),
        ({"chunks": [[f"https://a.com/{i}" for i in range(1001)]]}, "request 1 has 1001 targets from 1 main"),
        ({"chunks": [["a.com"], ["HTTPS://A.com/x"]]}, "request 2: 'HTTPS://A.com/x' is not normalised"),
        ({"chunks": [["a.com"], ["b.com/page"]]}, "request 2: invalid target 'b.com/page'"),
        ({"chunks": [["a.com"], ["a.com"]]}, "a target appears more than once"),
        ({"group": 3}, "a chunk group needs 'chunks' or a 'uri'"),
    ],
)
def test_bad_groups_are_refused_before_anything_is_sent(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_chunk_group(document, _Storage().read)


def test_a_missing_group_file_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        load_chunk_group({"uri": "memory://nowhere.json"}, _Storage().read)


# ---------------------------------------------------------------------------------------------
# Streaming input
# ---------------------------------------------------------------------------------------------

FILES = [
    "example.com\nhttps://example.org/a\n",
    "\ufeffurl\n# comment\n\nhttps://example.com/a\nexample.org\n",
    "rank,domain\n1,google.com\n2,example.org\n",
    "1,google.com\n2,example.org\n",
    'id,target,note\n1,"https://example.com/?a=1,2",x\n2,example.org,y\n',
    "#only comments\n\n",
    "",
    "a.com,b.com\nshort\n",
    "https://shop.example.com/list?ids=a.com,b.com\r\nhttps://example.org/p?tags=x,y.net\r\n",
    "url\nhttps://a.com/?ids=x,y\n1,https://b.com/?t=p,q\n",
    '1,https://a.com/?ids=x,y\n2,"https://b.com/?t=p,q"\n',
    "https://a.com/x,https://b.com/y\n",
]


@pytest.mark.parametrize("text", FILES)
def test_streamed_file_reading_matches_parse_target_file(text: str) -> None:
    assert list(read_target_lines(text.splitlines(keepends=True))) == parse_target_file(text)


def test_normalise_stream_matches_normalise_targets() -> None:
    raw = ["HTTPS://Example.com", "example.org", "https://example.com/#top", "example.org", "WWW.Example.org"]
    raw += _targets(500, 40, seed=1)
    full = normalise_targets(raw)
    lean = normalise_stream(iter(raw))
    assert lean.targets == full.targets
    assert lean.inputs == len(raw)
    assert all(lean.inputs_of(t) == full.inputs_of(t) for t in full.targets)
    assert full.inputs == lean.extra_inputs
    assert lean.extra_inputs == {
        "https://example.com/": ["HTTPS://Example.com", "https://example.com/#top"],
        "example.org": ["example.org", "WWW.Example.org"],  # an identical input is listed once
    }


def test_normalise_stream_lists_every_bad_entry() -> None:
    with pytest.raises(InvalidTargetsError) as err:
        normalise_stream(iter(["example.com", "example.com/page", "", "ftp://x.com/f"]))
    assert [(pos, value) for pos, value, _ in err.value.errors] == [
        (1, "example.com/page"),
        (2, ""),
        (3, "ftp://x.com/f"),
    ]
    with pytest.raises(InvalidTargetsError, match="no targets given"):
        normalise_stream(iter([]))


def test_plan_from_a_file_of_targets(tmp_path: Path) -> None:
    from airflow_provider_dataforseo.operators.plan import plan_bulk_pages_summary

    targets = _targets(12_000, 1_500, seed=11)
    listing = tmp_path / "targets.txt"
    listing.write_text("target\n" + "\n".join(targets) + "\n", encoding="utf-8")
    descriptors = plan_bulk_pages_summary(
        listing.as_uri(), (tmp_path / "groups").as_uri(), requests_per_group=4
    )
    assert [d["requests"] for d in descriptors] == [4, 4, 4, 3]  # 15 = max(ceil(12000/1000), ceil(1500/100))
    assert sum(d["targets"] for d in descriptors) == 12_000
    assert sorted(p.name for p in (tmp_path / "groups").iterdir()) == [
        f"group-0000{i}.json" for i in range(4)
    ]
    document = json.loads((tmp_path / "groups" / "group-00002.json").read_text())
    assert document["chunks"] == plan_chunks(targets)[8:12]
    assert document["inputs"] == {}


def test_plan_refuses_bad_targets_without_retries(tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_dataforseo.operators.plan import plan_bulk_pages_summary

    with pytest.raises(AirflowFailException, match="1 invalid target"):
        plan_bulk_pages_summary(["example.com", "example.com/page"], (tmp_path / "g").as_uri())
    with pytest.raises(AirflowFailException, match="too many to pass through XCom"):
        plan_bulk_pages_summary(_targets(3_000, 30), None)
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


# ---------------------------------------------------------------------------------------------
# merge_manifests
# ---------------------------------------------------------------------------------------------


def _manifest(
    i: int, targets: int, items: int, requests: int, missing: int, unmatched: int = 0
) -> dict[str, Any]:
    cost = round(requests * api.COST_PER_REQUEST_USD + items * api.COST_PER_ITEM_USD, 6)
    return {
        "uri": f"file:///out/part-{i}/bulk_pages_summary.jsonl",
        "targets": targets,
        "items": items,
        "requests": requests,
        "cost_usd": cost,
        "missing_targets": missing,
        "unmatched_items": unmatched,
    }


def test_merge_manifests_adds_up_totals_and_cost() -> None:
    parts = [
        _manifest(0, 20_000, 19_412, 20, 588),
        {**_manifest(1, 19_950, 19_380, 20, 571, 1), "rejected_targets": ["https://bad.example.com/x"]},
        {**_manifest(2, 60, 58, 1, 2), "rejected_targets": ["https://bad.example.com/y"]},
    ]  # the first part has no rejected_targets key at all (older manifests)
    merged = merge_manifests(parts, uri="file:///out/manifest.json")
    assert merged == {
        "uri": "file:///out/manifest.json",
        "parts": 3,
        "targets": 40_010,
        "items": 38_850,
        "requests": 41,
        "cost_usd": 1.9855,  # 41 x 0.02 + 38,850 x 0.00003
        "missing_targets": 1_161,
        "unmatched_items": 1,
        "rejected_targets": ["https://bad.example.com/x", "https://bad.example.com/y"],
        "unresolved_targets": [],
        "part_uris": [f"file:///out/part-{i}/bulk_pages_summary.jsonl" for i in range(3)],
    }


def test_merge_manifests_of_nothing_and_of_a_lazy_sequence() -> None:
    assert merge_manifests([]) == {
        "uri": None,
        "parts": 0,
        "targets": 0,
        "items": 0,
        "requests": 0,
        "cost_usd": 0.0,
        "missing_targets": 0,
        "unmatched_items": 0,
        "rejected_targets": [],
        "unresolved_targets": [],
        "part_uris": [],
    }
    merged = merge_manifests(_manifest(i, 1000, 970, 1, 30) for i in range(1024))
    assert (merged["parts"], merged["targets"], merged["items"], merged["requests"]) == (
        1024,
        1_024_000,
        993_280,
        1024,
    )
    assert merged["cost_usd"] == pytest.approx(1024 * 0.0491, abs=1e-9)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "manifest 1 is None, not a manifest mapping"),
        ({**_manifest(1, 1, 1, 1, 0), "items": None}, "manifest 1 has no integer 'items': None"),
        ({**_manifest(1, 1, 1, 1, 0), "cost_usd": "0.02"}, "manifest 1 has no number 'cost_usd': '0.02'"),
        ({**_manifest(1, 1, 1, 1, 0), "rejected_targets": 3}, "manifest 1 has no list 'rejected_targets': 3"),
        (
            {**_manifest(1, 1, 1, 1, 0), "unresolved_targets": "x"},
            "manifest 1 has no list 'unresolved_targets': 'x'",
        ),
    ],
)
def test_merge_manifests_refuses_a_missing_or_broken_part(bad: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        merge_manifests([_manifest(0, 1, 1, 1, 0), bad])
    assert str(err.value) == message


def test_target_main_domain_is_what_groups_respect() -> None:
    # a sanity check of the helper the invariants lean on
    assert target_main_domain("https://docs.example.co.uk/x") == "example.co.uk"


def test_merge_manifests_adds_up_the_parts_upper_bounds_of_spend() -> None:
    with_bound = {**_manifest(0, 1000, 970, 1, 30), "cost_upper_bound_usd": 0.1}
    merged = merge_manifests([with_bound, _manifest(1, 1000, 970, 1, 30)])
    assert merged["cost_upper_bound_usd"] == round(0.1 + _manifest(1, 1000, 970, 1, 30)["cost_usd"], 6)
    assert "cost_upper_bound_usd" not in merge_manifests([_manifest(1, 1000, 970, 1, 30)])
    with pytest.raises(ValueError, match="manifest 0 has no number 'cost_upper_bound_usd': None"):
        merge_manifests([{**with_bound, "cost_upper_bound_usd": None}])
