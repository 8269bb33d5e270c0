"""targets.py: normalisation, validation, de-duplication, reading inputs, main domains, planning."""

from __future__ import annotations

import math
import random
import re
import string
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo.chunks import lower_bound, plan_chunks
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.sources import coerce_targets, is_storage_uri, is_target, parse_target_file
from airflow_provider_dataforseo.targets import (
    MAX_TARGET_LENGTH,
    TargetSet,
    count_main_domains,
    main_domain,
    normalise_target,
    normalise_targets,
    target_host,
    target_main_domain,
)

TOP_DOMAINS_CSV = Path("/work/shared/data/top-domains-20k.csv")


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

NORMALISATION_TABLE = [
    # whitespace and BOM around the entry
    ("  example.com \t\n", "example.com"),
    ("\ufeffexample.com", "example.com"),
    (" \ufeff https://example.com/a ", "https://example.com/a"),
    # scheme and host lowercased; path and query keep their case
    ("HTTPS://Example.COM/Path/To?Q=AbC&x=Y", "https://example.com/Path/To?Q=AbC&x=Y"),
    ("Http://EXAMPLE.com/CaseSensitive", "http://example.com/CaseSensitive"),
    ("Docs.Example.COM", "docs.example.com"),
    # the #fragment is dropped
    ("https://example.com/page#section-2", "https://example.com/page"),
    ("https://example.com/page?q=1#top", "https://example.com/page?q=1"),
    ("https://example.com#top", "https://example.com/"),
    # www. stripped from domains, kept in page URLs
    ("www.example.com", "example.com"),
    ("WWW.Example.COM", "example.com"),
    ("www.example.co.uk", "example.co.uk"),
    ("https://www.example.com/", "https://www.example.com/"),
    ("http://www.example.com", "http://www.example.com/"),
    # www. is kept when what follows is a public suffix: www.gov.uk is a registrable domain
    ("www.gov.uk", "www.gov.uk"),
    # IDN -> punycode, for domains and inside URLs
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.de", "xn--bcher-kva.de"),
    ("www.bücher.de", "xn--bcher-kva.de"),
    ("https://bücher.de/Seite?x=Ä", "https://xn--bcher-kva.de/Seite?x=%C3%84"),
    ("https://www.bücher.de", "https://www.xn--bcher-kva.de/"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
    # a path-less page URL gets its "/"
    ("https://example.com", "https://example.com/"),
    ("https://example.com?q=1", "https://example.com/?q=1"),
    # default port dropped, other ports kept
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:80", "http://example.com/"),
    ("https://example.com:8443/a", "https://example.com:8443/a"),
    ("http://example.com:443/", "http://example.com:443/"),
    # trailing dot / slash of a domain stripped
    ("example.com.", "example.com"),
    ("example.com/", "example.com"),
    ("docs.example.com//", "docs.example.com"),
    ("www.example.com/", "example.com"),
    ("https://example.com./a", "https://example.com/a"),
    # multi-label public suffixes and private-section suffix hosts are valid
    ("a.b.example.co.uk", "a.b.example.co.uk"),
    ("github.io", "github.io"),
    ("blogspot.com", "blogspot.com"),
    ("foo.blogspot.com", "foo.blogspot.com"),
    ("https://user.github.io/Repo/", "https://user.github.io/Repo/"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALISATION_TABLE)
def test_normalise_target(raw: str, expected: str) -> None:
    assert normalise_target(raw) == expected


@pytest.mark.parametrize("expected", sorted({e for _, e in NORMALISATION_TABLE}))
def test_normalisation_is_idempotent(expected: str) -> None:
    assert normalise_target(expected) == expected


def test_scheme_less_page_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValueError, match="a page needs its scheme") as info:
        normalise_target("example.com/page")
    assert "'https://example.com/page'" in str(info.value)


def test_length_limit_applies_after_normalisation() -> None:
    longest = "https://x.com/" + "a" * (MAX_TARGET_LENGTH - len("https://x.com/"))
    assert normalise_target(longest) == longest
    # the dropped fragment and default port do not count against the limit
    assert normalise_target(longest + "#" + "f" * 100) == longest
    assert normalise_target(longest.replace("x.com/", "X.COM:443/")) == longest
    with pytest.raises(ValueError, match="longer than 2048 characters"):
        normalise_target(longest + "a")


# ---------------------------------------------------------------------------------------------
# De-duplication and validation of a whole input
# ---------------------------------------------------------------------------------------------


def test_deduplication_keeps_first_seen_order_and_every_input() -> None:
    raw = [
        "HTTPS://X.com",
        "b.com",
        "https://x.com/",
        "https://www.x.com/",
        "https://x.com#a",
        "www.b.com",
        "B.com.",
        "x.com",
    ]
    target_set = normalise_targets(raw)
    assert isinstance(target_set, TargetSet)
    assert target_set.targets == ["https://x.com/", "b.com", "https://www.x.com/", "x.com"]
    assert len(target_set) == 4
    assert target_set.inputs == {  # only the targets given in another form or more than once
        "https://x.com/": ["HTTPS://X.com", "https://x.com/", "https://x.com#a"],
        "b.com": ["b.com", "www.b.com", "B.com."],
    }
    assert [target_set.inputs_of(t) for t in target_set.targets] == [
        ["HTTPS://X.com", "https://x.com/", "https://x.com#a"],
        ["b.com", "www.b.com", "B.com."],
        ["https://www.x.com/"],
        ["x.com"],
    ]


def test_duplicate_identical_inputs_are_listed_once_as_inputs() -> None:
    target_set = normalise_targets(["a.com", "a.com", "A.com"])
    assert target_set.targets == ["a.com"]
    assert target_set.inputs == {"a.com": ["a.com", "A.com"]}


# (value, words the reason must contain)
BAD_ENTRIES: list[tuple[object, str]] = [
    ("", "empty"),
    ("   ", "empty"),
    (42, "not a string but int"),
    (None, "not a string but NoneType"),
    ("ftp://example.com/file.txt", "unsupported scheme 'ftp'"),
    ("https://example.com:0/", "port 0 is no port"),
    ("http://example.com:00/page", "port 0 is no port"),
    ("https://example.com:99999/", "Port out of range"),
    ("exa mple.com", "whitespace inside"),
    ("https://example.com/a b", "whitespace inside"),
    ("-a.com", "invalid host label '-a'"),
    ("a-.com", "invalid host label 'a-'"),
    ("a..com", "invalid host label ''"),
    ("exa_mple.com", "invalid host label 'exa_mple'"),
    ("https://exa_mple.com/", "invalid host label 'exa_mple'"),
    ("a" * 64 + ".com", "invalid host label"),
    ("https://x.com/" + "a" * MAX_TARGET_LENGTH, "longer than 2048 characters in normal form (2,062)"),
    # short as written, long once its characters are percent-encoded: the length that counts is said
    ("https://x.com/" + "<" * 700, "longer than 2048 characters in normal form (2,114)"),
    (("a" * 60 + ".") * 5 + "com", "host name longer than 253 characters"),
    ("192.168.0.1", "IP addresses are not supported"),
    ("https://10.0.0.1/admin", "IP addresses are not supported"),
    ("https://[2001:db8::1]/", "IP addresses are not supported"),
    ("co.uk", "'co.uk' is a public suffix, not a domain"),
    ("https://co.uk/", "'co.uk' is a public suffix, not a domain"),
    ("com", "host has no public suffix"),
    ("localhost", "host has no public suffix"),
    ("example.com/page", "did you mean 'https://example.com/page'?"),
    ("example.com?q=1", "a page needs its scheme"),
    ("example.com:8080", "did you mean 'https://example.com:8080/'? (domains have no port)"),
    ("//example.com/", "a page needs its scheme: did you mean 'https://example.com/'?"),
    ("https://", "empty host"),
    ("https://user:secret@example.com/", "URL carries user credentials"),
    ("https://example.com:99999/", "malformed URL"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_ENTRIES)
def test_each_bad_entry_is_rejected_with_its_reason(value: object, reason: str) -> None:
    with pytest.raises(InvalidTargetsError) as info:
        normalise_targets(["ok.com", value])
    assert len(info.value.errors) == 1
    position, bad, message = info.value.errors[0]
    assert position == 1
    assert bad == value
    assert reason in message


def test_one_error_lists_every_bad_entry_with_position_and_reason() -> None:
    values: list[object] = ["good.com"]
    for value, _ in BAD_ENTRIES:
        values.extend([value, "https://fine.org/"])
    with pytest.raises(InvalidTargetsError) as info:
        normalise_targets(values)
    error = info.value
    assert [position for position, _, _ in error.errors] == list(range(1, 2 * len(BAD_ENTRIES), 2))
    for (_, value, message), (expected_value, reason) in zip(error.errors, BAD_ENTRIES, strict=True):
        assert value == expected_value
        assert reason in message
    text = str(error)
    assert text.startswith(f"{len(BAD_ENTRIES)} invalid target(s), nothing was sent:\n")
    for value, _ in BAD_ENTRIES:  # long values are cut to 200 characters (issue 11)
        assert repr(value[:200] if isinstance(value, str) else value) in text


@pytest.mark.parametrize("values", [[], (), iter([])])
def test_no_targets_at_all_is_an_error(values: object) -> None:
    with pytest.raises(InvalidTargetsError) as info:
        normalise_targets(values)  # type: ignore[arg-type]
    assert info.value.errors == [(0, "", "no targets given")]


def test_only_bad_entries_is_an_error_naming_them() -> None:
    with pytest.raises(InvalidTargetsError) as info:
        normalise_targets(["", None])
    assert [(p, v) for p, v, _ in info.value.errors] == [(0, ""), (1, None)]


# ---------------------------------------------------------------------------------------------
# Reading the ways targets arrive
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a.com", "https://b.com/"], ["a.com", "https://b.com/"]),
        (("a.com", "b.com"), ["a.com", "b.com"]),
        ("['a.com', 'b.com']", ["a.com", "b.com"]),
        ('["a.com","b.com"]', ["a.com", "b.com"]),
        ("  ['a.com']  ", ["a.com"]),
        ("\ufeff['a.com', 'b.com']", ["a.com", "b.com"]),
        ("a.com\nb.com\n", ["a.com", "b.com"]),
        ("a.com,b.com", ["a.com", "b.com"]),
        ("a.com, b.com", ["a.com", "b.com"]),  # inputs trimmed (issue 11)
        ("a.com\r\nb.com\rc.com\n\n,d.com\r\n", ["a.com", "b.com", "c.com", "d.com"]),
        ("https://x.com/?a=1", ["https://x.com/?a=1"]),
        ("[not a list]", ["[not a list]"]),
        ("[1, None]", [1, None]),
        ("", []),
        ([], []),
    ],
)
def test_coerce_targets(value: object, expected: list[object]) -> None:
    assert coerce_targets(value) == expected


def test_coerce_targets_returns_a_new_list() -> None:
    original = ["a.com"]
    result = coerce_targets(original)
    result.append("b.com")
    assert original == ["a.com"]


def test_coerced_comma_text_normalises_cleanly() -> None:
    assert normalise_targets(coerce_targets("a.com, b.com,\tc.com")).targets == ["a.com", "b.com", "c.com"]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"a.com", "b.com"}, "must be ordered"),
        (frozenset({"a.com"}), "must be ordered"),
        (42, "not int"),
        (None, "not NoneType"),
        ({"a.com": 1}, "not dict"),
    ],
)
def test_coerce_targets_type_errors(value: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        coerce_targets(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("target\na.com\nhttps://b.com/x\n", ["a.com", "https://b.com/x"]),
        ("url\nhttps://b.com/x\n", ["https://b.com/x"]),
        ("Domain\na.com\n", ["a.com"]),
        ("a.com\n\n   \n# a comment\n  # indented comment\nb.com\n", ["a.com", "b.com"]),
        ("\ufefftarget\na.com\n", ["a.com"]),
        ("\ufeffa.com\r\nb.com\r\n", ["a.com", "b.com"]),
        ("rank,domain\n1,google.com\n2,bücher.de\n", ["google.com", "bücher.de"]),
        ("domain,rank\nx.com,1\ny.com,2\n", ["x.com", "y.com"]),
        ("1,google.com\n2,x.com\n", ["google.com", "x.com"]),
        ('url,note\n"https://x.com/?a=1,2",hi\n', ["https://x.com/?a=1,2"]),
        ("rank,domain\n1\n", [""]),
        ("", []),
        ("# only a comment\n\n", []),
    ],
)
def test_parse_target_file(text: str, expected: list[str]) -> None:
    assert parse_target_file(text) == expected


def test_parse_real_top_domains_csv() -> None:
    text = TOP_DOMAINS_CSV.read_text(encoding="utf-8")
    entries = parse_target_file(text)
    assert len(entries) == 20000
    assert entries[:3] == ["google.com", "microsoft.com", "mail.ru"]
    assert normalise_targets(entries).targets[:3] == ["google.com", "microsoft.com", "mail.ru"]


# Commas inside URLs: a URL is never cut at a comma that can belong to it.

COMMA_URLS = ["https://shop.example.com/list?ids=a.com,b.com", "https://example.org/p?tags=x,y.net"]


def test_file_of_urls_with_commas_keeps_each_url_whole() -> None:
    entries = parse_target_file("\n".join(COMMA_URLS) + "\n")
    assert entries == COMMA_URLS
    assert normalise_targets(entries).targets == COMMA_URLS


def test_text_url_with_commas_is_one_target() -> None:
    assert coerce_targets("https://ex.com/?ids=a.com,b.com") == ["https://ex.com/?ids=a.com,b.com"]
    assert coerce_targets("\n".join(COMMA_URLS)) == COMMA_URLS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://a.com/x,https://b.com/y", ["https://a.com/x", "https://b.com/y"]),
        ("https://a.com/x, HTTPS://b.com/y", ["https://a.com/x", "HTTPS://b.com/y"]),
        ("https://a.com/?ids=1,2,https://b.com/?t=x,y", ["https://a.com/?ids=1,2", "https://b.com/?t=x,y"]),
        ("HTTP://A.com/?ids=1,2", ["HTTP://A.com/?ids=1,2"]),
        ("https://a.com/x,\nhttps://b.com/y, ,\n", ["https://a.com/x", "https://b.com/y"]),
        ("a.com,b.com,https://x.com/?ids=1,c.com", ["a.com", "b.com", "https://x.com/?ids=1,c.com"]),
        ("https://a.com/x,,y", ["https://a.com/x,,y"]),
        ("a.com,,b.com,", ["a.com", "b.com"]),
    ],
)
def test_coerce_targets_splits_only_at_commas_outside_urls(text: str, expected: list[str]) -> None:
    assert coerce_targets(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a header: read as CSV, quoting keeps the commas of a quoted URL
        ('id,url,note\n1,"https://a.com/?ids=x,y",hi\n2,b.com,"a, b"\n', ["https://a.com/?ids=x,y", "b.com"]),
        # a header whose target column is the last: an unquoted URL's commas are joined back
        ("url\nhttps://a.com/?ids=x,y\nb.com\n", ["https://a.com/?ids=x,y", "b.com"]),
        (
            "rank,url\n1,https://a.com/?ids=x,y\n2,https://b.com/,https://c.com/\n",
            ["https://a.com/?ids=x,y", "https://b.com/"],
        ),
        ("domain,rank\nx.com,1\n", ["x.com"]),
        # no header: the rank,domain shape, and rank,url with the URL's commas
        ("1,google.com\n2,microsoft.com\n", ["google.com", "microsoft.com"]),
        (
            '1,https://a.com/?ids=x,y\n2,"https://b.com/?t=p,q"\n',
            ["https://a.com/?ids=x,y", "https://b.com/?t=p,q"],
        ),
        # no header: url1,url2 on one line is two targets (issue 11: the first was lost)
        ("https://a.com/x,https://b.com/y\n", ["https://a.com/x", "https://b.com/y"]),
        # a line starting with a URL is never a header
        ("https://a.com/?k=url,target\n", ["https://a.com/?k=url,target"]),
        # a trailing comma is an empty last column (no target), never part of the URL
        ("https://a.com/x,\n", ["https://a.com/x"]),
    ],
)
def test_parse_target_file_commas(text: str, expected: list[str]) -> None:
    assert parse_target_file(text) == expected


def test_real_top_domains_csv_shape_is_rank_then_domain() -> None:
    first = TOP_DOMAINS_CSV.read_text(encoding="utf-8").splitlines()[0]
    assert first == "1,google.com"  # no header: the last column is read


_URL_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%/?@"


@st.composite
def _comma_urls(draw: st.DrawFn) -> str:
    """A valid page URL, often with commas (never ending in one, never holding ``://``).

    Before its query, no comma is followed by a whole target: ``https://a.com/,b.com`` is two
    targets (issue 11), so such a URL cannot round-trip; nor by a number only, after a comma, a
    semicolon or a tab: lines of the same width with a column of numbers are a table (a
    header-less Search Console export).
    """
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = draw(st.sampled_from(["example.com", "a.example.org", "shop.co.uk"]))
    rest = draw(st.text(alphabet=_URL_CHARS, max_size=30).filter(lambda s: not s.endswith(",")))
    path = rest.partition("?")[0]
    assume(not any(is_target(piece) for piece in path.split(",")[1:]))
    # the same holds for ";" and a tab, the other delimiters a table may use
    assume(
        not any(
            re.fullmatch(r"[-+]?[\d.,\s']*\d[\d.,\s']*%?", piece) for piece in re.split(r"[,;\t]", rest)[1:]
        )
    )
    return f"{scheme}://{host}/{rest}"


@settings(max_examples=200, deadline=None)
@given(urls=st.lists(_comma_urls(), min_size=1, max_size=6))
def test_urls_with_commas_round_trip_through_text_and_files(urls: list[str]) -> None:
    lines = "\n".join(urls)
    assert coerce_targets(lines) == urls
    assert coerce_targets(",".join(urls)) == urls
    assert [entry.strip() for entry in coerce_targets(", ".join(urls))] == urls
    assert parse_target_file(lines) == urls
    assert parse_target_file("url\n" + lines) == urls
    assert parse_target_file("\n".join(f"{i},{url}" for i, url in enumerate(urls))) == urls


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("file:///x.txt", True),
        ("s3://a@b/c.csv", True),
        ("S3://bucket/key.txt", True),
        ("gs://bucket/targets.csv", True),
        ("  file:///tmp/targets.txt  ", True),
        ("https://x.com/", False),
        ("HTTP://x.com/", False),
        ("x.com", False),
        ("example.com/page", False),
        ("", False),
        ("s3://a/b.txt\nx.com", False),
        (None, False),
        (["s3://a/b.txt"], False),
    ],
)
def test_is_storage_uri(value: object, expected: bool) -> None:
    assert is_storage_uri(value) is expected


# ---------------------------------------------------------------------------------------------
# Main domains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "count"),
    [
        (["x.com", "docs.x.com"], 1),
        (["x.com", "docs.x.com", "https://www.x.com/a", "http://api.x.com:8080/"], 1),
        (["x.com", "x.net"], 2),
        (["a.co.uk", "b.co.uk"], 2),
        (["a.co.uk", "docs.a.co.uk"], 1),
        (["a.blogspot.com", "b.blogspot.com"], 2),
        (["a.github.io", "https://b.github.io/x", "github.io"], 3),
        (["github.io", "https://github.io/about"], 1),
        ([], 0),
    ],
)
def test_count_main_domains(targets: list[str], count: int) -> None:
    assert count_main_domains(targets) == count


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("x.com", "x.com"),
        ("docs.x.com", "x.com"),
        ("docs.example.co.uk", "example.co.uk"),
        ("foo.blogspot.com", "foo.blogspot.com"),
        ("a.b.foo.blogspot.com", "foo.blogspot.com"),
        ("github.io", "github.io"),
        ("blogspot.com", "blogspot.com"),
        ("co.uk", None),
        ("com", None),
    ],
)
def test_main_domain(host: str, expected: str | None) -> None:
    assert main_domain(host) == expected


def test_private_suffix_hosts_are_valid_targets_and_their_own_main_domain() -> None:
    target_set = normalise_targets(["github.io", "https://github.io/", "blogspot.com"])
    assert target_set.targets == ["github.io", "https://github.io/", "blogspot.com"]
    assert [target_main_domain(t) for t in target_set.targets] == ["github.io", "github.io", "blogspot.com"]


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("x.com", "x.com"),
        ("https://x.com/", "x.com"),
        ("https://docs.x.com:8443/a:b", "docs.x.com"),
        ("http://www.xn--bcher-kva.de/p?q=a:b", "www.xn--bcher-kva.de"),
        ("https://user@X.com/", "x.com"),
    ],
)
def test_target_host(target: str, host: str) -> None:
    assert target_host(target) == host


@pytest.mark.parametrize("target", sorted({e for _, e in NORMALISATION_TABLE if "://" in e}))
def test_target_host_agrees_with_urlsplit_on_normalised_targets(target: str) -> None:
    assert target_host(target) == urlsplit(target).hostname


# ---------------------------------------------------------------------------------------------
# Planning: helpers
# ---------------------------------------------------------------------------------------------

# multi-label ICANN suffixes and private-section suffixes, so main domains are not "last two labels"
SUFFIXES = ("com", "co.uk", "com.au", "blogspot.com", "github.io", "co.jp", "gov.uk", "org")


def domain_name(i: int) -> str:
    return f"d{i}.{SUFFIXES[i % len(SUFFIXES)]}"


def target_name(i: int, page: int) -> str:
    """The page-th target of main domain i: the domain, a subdomain, or a page (with or without www)."""
    domain = domain_name(i)
    if page == 0:
        return domain
    if page == 1:
        return f"docs.{domain}"
    if page % 3 == 0:
        return f"https://www.{domain}/p{page}"
    return f"http://{domain}/P{page}"


def build_targets(sizes: list[int], order: str, seed: int = 0) -> list[str]:
    """Targets for main domains of the given sizes: grouped, interleaved or shuffled."""
    combos = [(i, page) for i, size in enumerate(sizes) for page in range(size)]
    if order == "interleaved":
        combos.sort(key=lambda combo: (combo[1], combo[0]))
    elif order == "shuffled":
        random.Random(seed).shuffle(combos)
    return [target_name(i, page) for i, page in combos]


def check_plan(targets: list[str], chunks: list[list[str]], max_targets: int, max_main_domains: int) -> None:
    """Every target exactly once, chunk limits, input order inside and between chunks."""
    flat = [target for chunk in chunks for target in chunk]
    assert len(flat) == len(targets)
    assert set(flat) == set(targets)
    position = {target: i for i, target in enumerate(targets)}
    for chunk in chunks:
        assert chunk
        assert len(chunk) <= max_targets
        assert count_main_domains(chunk) <= max_main_domains
        assert [position[t] for t in chunk] == sorted(position[t] for t in chunk)
    assert [position[chunk[0]] for chunk in chunks] == sorted(position[chunk[0]] for chunk in chunks)


def bound(n: int, d: int, max_targets: int, max_main_domains: int) -> int:
    return max(math.ceil(n / max_targets), math.ceil(d / max_main_domains))


def test_build_targets_are_normalised_and_grouped_as_intended() -> None:
    targets = build_targets([4, 4, 4, 4, 4, 4, 4, 4], "shuffled", seed=3)
    assert normalise_targets(targets).targets == targets
    assert count_main_domains(targets) == 8
    assert {target_main_domain(target_name(i, p)) for i in range(8) for p in range(4)} == {
        domain_name(i) for i in range(8)
    }


# ---------------------------------------------------------------------------------------------
# Planning: exact cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "expected"),
    [(0, 0, 0), (1, 1, 1), (1000, 100, 1), (1001, 1, 2), (1, 101, 2), (1995, 200, 2), (40000, 20000, 200)],
)
def test_lower_bound(n: int, d: int, expected: int) -> None:
    assert lower_bound(n, d) == expected


def test_plan_chunks_of_nothing_is_empty() -> None:
    assert plan_chunks([]) == []


def test_bound_counterexample_needs_three_requests() -> None:
    """1000 targets of one main domain + 199 main domains of 5 targets: bound 2, best plan 3.

    Why 2 is impossible: two requests have 2 * 100 = 200 domain slots and there are exactly 200
    main domains, so no main domain may be split over both requests (a split takes two slots, and
    201 > 200). The 1000-target domain is therefore whole in one request, which is then full
    (1000 targets) and holds nothing else; the other request would need 199 > 100 main domains.
    """
    sizes = [1000] + [5] * 199
    targets = build_targets(sizes, "grouped")
    assert (len(targets), count_main_domains(targets)) == (1995, 200)
    assert lower_bound(1995, 200) == 2
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert len(chunks) == 3


def test_a_big_domain_is_split_to_meet_the_bound() -> None:
    # regression: worst-fit alone filled one request with 1000 of the big domain's targets and
    # wasted its 99 other domain slots, so it needed 3 requests where 2 suffice (550+99*4 twice)
    sizes = [1100] + [4] * 198
    targets = build_targets(sizes, "shuffled", seed=1)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert len(chunks) == lower_bound(1892, 199) == 2


def test_custom_limits_larger_than_the_api_s_give_fewer_chunks() -> None:
    # regression: the first k came from the API's limits, so 2000 targets planned with
    # max_targets=5000 were spread over two chunks
    targets = build_targets([1000, 1000], "grouped")
    assert plan_chunks(targets, max_targets=5000) == [targets]


def test_custom_small_limits() -> None:
    targets = build_targets([3, 3, 3, 3], "interleaved")
    chunks = plan_chunks(targets, max_targets=4, max_main_domains=2)
    check_plan(targets, chunks, 4, 2)
    assert len(chunks) == 3


def test_single_domain_limit_uses_one_chunk_per_piece() -> None:
    targets = build_targets([5, 2, 7], "shuffled", seed=2)
    chunks = plan_chunks(targets, max_targets=3, max_main_domains=1)
    check_plan(targets, chunks, 3, 1)
    assert len(chunks) == 2 + 1 + 3


def test_a_main_domain_fitting_in_one_request_stays_together() -> None:
    targets = build_targets([300, 300, 300], "interleaved")
    chunks = plan_chunks(targets)
    assert len(chunks) == 1
    targets = build_targets([600, 600], "interleaved")
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert sorted(count_main_domains(chunk) for chunk in chunks) == [1, 1]


def test_real_top_domains_and_home_pages_plan_into_the_lower_bound() -> None:
    domains = parse_target_file(TOP_DOMAINS_CSV.read_text(encoding="utf-8"))
    raw = domains + [f"https://{domain}/" for domain in domains]
    target_set = normalise_targets(raw)
    targets = target_set.targets
    n, d = len(targets), count_main_domains(targets)
    assert (n, d) == (40000, 20000)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert len(chunks) == lower_bound(n, d) == 200


def test_adversarial_interleaving_of_real_domains() -> None:
    domains = parse_target_file(TOP_DOMAINS_CSV.read_text(encoding="utf-8"))[:250]
    pages = ("/", "/about", "/Contact?x=1", "/blog/")
    targets = normalise_targets([f"https://{domain}{page}" for page in pages for domain in domains]).targets
    n, d = len(targets), count_main_domains(targets)
    assert (n, d) == (1000, 250)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert len(chunks) <= lower_bound(n, d) + 1
    assert len(chunks) == lower_bound(n, d) == 3  # d = 250 <= 3*99 + 1: the bound is guaranteed


def test_large_adversarial_plan_is_valid_and_near_the_bound() -> None:
    # 150 blocks of one 1100-target domain + 198 domains of 2: every big domain must be split, so
    # the bound (1 piece per domain) is out of reach; the plan must stay valid and fast
    sizes: list[int] = []
    for _ in range(150):
        sizes += [1100] + [2] * 198
    targets = build_targets(sizes, "interleaved")
    n, d = len(targets), len(sizes)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    pieces = d + 150  # each 1100-target domain needs at least two pieces
    assert math.ceil(pieces / 100) <= len(chunks) <= max(math.ceil(n / 1000), math.ceil((d - 1) / 99))


# ---------------------------------------------------------------------------------------------
# Planning: properties
# ---------------------------------------------------------------------------------------------

ORDERS = st.sampled_from(["grouped", "interleaved", "shuffled"])


@st.composite
def small_instances(draw: st.DrawFn) -> tuple[list[int], int, int, str, int]:
    """Main-domain sizes under small limits, so every packing situation shows up quickly."""
    max_targets = draw(st.integers(1, 40))
    max_main_domains = draw(st.integers(1, 8))
    sizes = draw(st.lists(st.integers(1, 2 * max_targets + 1), min_size=1, max_size=40))
    return sizes, max_targets, max_main_domains, draw(ORDERS), draw(st.integers(0, 2**16))


@st.composite
def api_instances(draw: st.DrawFn) -> tuple[list[int], str, int]:
    """Main-domain sizes under the API's limits: a few big main domains and many small ones."""
    big = draw(st.lists(st.integers(100, 1000), max_size=4))
    n_small = draw(st.integers(0 if big else 1, 350))
    small_max = draw(st.integers(1, 12))
    rnd = draw(st.randoms(use_true_random=False))
    sizes = big + [rnd.randint(1, small_max) for _ in range(n_small)]
    rnd.shuffle(sizes)
    return sizes, draw(ORDERS), draw(st.integers(0, 2**16))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
@example(([1, 1, 73], 36, 2, "grouped", 0))  # worst-fit alone: 4 chunks, above the upper bound 3
@example(([5, 2, 7], 3, 1, "shuffled", 0))
def test_plan_properties_small_limits(instance: tuple[list[int], int, int, str, int]) -> None:
    sizes, max_targets, max_main_domains, order, seed = instance
    targets = build_targets(sizes, order, seed)
    chunks = plan_chunks(targets, max_targets=max_targets, max_main_domains=max_main_domains)
    check_plan(targets, chunks, max_targets, max_main_domains)
    assert plan_chunks(list(targets), max_targets=max_targets, max_main_domains=max_main_domains) == chunks
    n, d = len(targets), len(sizes)
    pieces = sum(math.ceil(size / max_targets) for size in sizes)
    assert len(chunks) >= max(
        bound(n, d, max_targets, max_main_domains), math.ceil(pieces / max_main_domains)
    )
    if max_main_domains == 1:
        assert len(chunks) == pieces
    else:
        assert len(chunks) <= max(math.ceil(n / max_targets), math.ceil((d - 1) / (max_main_domains - 1)))


def _bound_is_guaranteed(sizes: list[int], max_targets: int, max_main_domains: int) -> bool:
    """The sufficient conditions of plan_chunks' docstring, for k = the lower bound."""
    n, d = sum(sizes), len(sizes)
    k = bound(n, d, max_targets, max_main_domains)
    domain_slack = d <= k * (max_main_domains - 1) + 1
    target_slack = d <= k * max_main_domains and n <= k * (max_targets - max(sizes))
    return domain_slack or target_slack


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_instances())
@example(([4, 1, 1], 3, 2, "grouped", 0))  # worst-fit alone: 3 chunks
@example(([1, 1, 5], 4, 2, "shuffled", 1))  # worst-fit alone: 3 chunks
@example(([1, 1, 73], 36, 2, "interleaved", 0))
def test_plan_meets_the_bound_under_the_sufficient_condition_small_limits(
    instance: tuple[list[int], int, int, str, int],
) -> None:
    """With k = max(ceil(n/T), ceil(d/D)), the plan has exactly k chunks when EITHER

    - slack in domain slots: d <= k*(D-1) + 1 (then n <= k*T suffices). Proof sketch, by
      induction on k: the first chunk takes m = floor(d/k) whole main domains W (the j smallest
      and m-j largest besides the largest one L) plus the piece a = n - (k-1)*T - sum(W) of L
      (clamped to [0, |L|]). Averaging gives sum(m smallest) <= m*n/d <= T and, as m+1 > d/k,
      sum(d-1-m smallest) <= (k-1)*T, so as j goes from m down to 0, sum(W) climbs from <= T to
      >= n - (k-1)*T - |L| in steps < |L| while that window is >= |L| wide: some j lands in it.
      The chunk has m+1 <= D main domains and <= T targets; the rest has <= (k-1)*T targets and
      d-m <= (k-1)*(D-1)+1 main domains, so the induction goes on; k = 1 is trivial.
    - slack in targets: d <= k*D and n <= k*(T - s_max). Dealing main domains largest first to
      chunks 1..k in turn puts ceil(d/k) <= D domains in each, and each later domain is at most the
      mean of the k dealt just before it, so a chunk holds at most s_max + n/k <= T targets.

    Without either, exact equality is cardinality-constrained bin packing (NP-hard in general)
    and the test_bound_counterexample_needs_three_requests instance shows it is not always possible.
    """
    sizes, max_targets, max_main_domains, order, seed = instance
    if not _bound_is_guaranteed(sizes, max_targets, max_main_domains):
        return
    targets = build_targets(sizes, order, seed)
    chunks = plan_chunks(targets, max_targets=max_targets, max_main_domains=max_main_domains)
    check_plan(targets, chunks, max_targets, max_main_domains)
    assert len(chunks) == bound(len(targets), len(sizes), max_targets, max_main_domains)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(api_instances())
def test_plan_properties_api_limits(instance: tuple[list[int], str, int]) -> None:
    sizes, order, seed = instance
    targets = build_targets(sizes, order, seed)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert plan_chunks(list(targets)) == chunks
    n, d = len(targets), count_main_domains(targets)
    assert d == len(sizes)
    assert len(chunks) >= lower_bound(n, d)
    if _bound_is_guaranteed(sizes, 1000, 100):
        assert len(chunks) == lower_bound(n, d)
    else:
        assert len(chunks) <= max(math.ceil(n / 1000), math.ceil((d - 1) / 99))


@pytest.mark.parametrize("k", [2, 3, 7])
def test_bound_is_met_at_the_edge_of_the_domain_slack_condition(k: int) -> None:
    # d = k*99 + 1 main domains, n = k*1000 targets: no slack in targets at all, and one big
    # domain that must be split; the guarantee still gives exactly k requests
    d = k * 99 + 1
    sizes = [k * 1000 - (d - 1) * 1] + [1] * (d - 1)
    targets = build_targets(sizes, "shuffled", seed=k)
    chunks = plan_chunks(targets)
    check_plan(targets, chunks, 1000, 100)
    assert len(chunks) == lower_bound(len(targets), d) == k


def test_identical_inputs_are_listed_once_and_ipv6_is_named() -> None:
    target_set = normalise_targets(["example.com"] * 5000 + ["www.example.com", "example.com"])
    assert target_set.targets == ["example.com"]
    assert target_set.inputs == {"example.com": ["example.com", "www.example.com"]}
    with pytest.raises(InvalidTargetsError, match="IP addresses are not supported"):
        normalise_targets(["http://[::1]/"])


def test_a_comma_and_a_space_after_a_url_separate_targets() -> None:
    # the example DAG's default params are typed like this in the trigger form
    assert [t.strip() for t in coerce_targets("https://example.com/, example.org, wikipedia.org")] == [
        "https://example.com/",
        "example.org",
        "wikipedia.org",
    ]
    assert coerce_targets("https://ex.com/?ids=a.com,b.com") == ["https://ex.com/?ids=a.com,b.com"]


def test_an_unquoted_url_with_commas_in_a_middle_csv_column_is_joined_back() -> None:
    # a tester's file: the url column is not the last one and its commas are not quoted
    text = 'url,rank\nhttps://ex.com/?a=1,2,5\n"https://ex.com/?q=x,y",6\nb.com,7\n'
    assert parse_target_file(text) == ["https://ex.com/?a=1,2", "https://ex.com/?q=x,y", "b.com"]
    assert parse_target_file("id,url,rank\n1,https://ex.com/?a=1,2,5\n") == ["https://ex.com/?a=1,2"]


def test_a_long_page_that_is_not_plain_takes_the_general_path_at_once() -> None:
    # the plain-page pattern is written so that it cannot backtrack: a 2,000-character path
    # ending in a character to encode used to be matched one character at a time, and a nested
    # "runs of characters" pattern would take exponential time here
    page = "https://a.com/" + "a" * 2000 + "<"
    assert normalise_target(page) == "https://a.com/" + "a" * 2000 + "%3C"
    assert normalise_target("https://a.com/?" + "%41b" * 400 + "^") == "https://a.com/?" + "Ab" * 400 + "%5E"
