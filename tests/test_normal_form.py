"""The one URL normal form (issue 11 items 4, 5; issue 10 item 1): examples and properties.

Every example the issues found is a named case; hypothesis checks that the form is a fixed point
(``normalise(normalise(x)) == normalise(x)``), that spellings of one page meet in one form, and
that the fast path for already-normal URLs gives what the full path gives.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

import pytest
import requests
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo.emulator.faults import (
    FaultConfig,
    FaultConfigError,
    add_cli_arguments,
    config_from_args,
    describe,
    respell_url,
)
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.fetch import ChunkOutcome, fetch_chunk
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.planning import load_chunk_group, plan_chunk_groups, write_chunk_groups
from airflow_provider_dataforseo.responses import TaskResult, match_items
from airflow_provider_dataforseo.targets import (
    _PLAIN_PAGE_RE,
    MAX_SHOWN_LENGTH,
    _normalise_page,
    normalise_target,
    normalise_targets,
)

if TYPE_CHECKING:
    from airflow_provider_dataforseo.emulator import EmulatorServer

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# The issues' examples, each a named case
# ---------------------------------------------------------------------------------------------

SAME_FORM = {
    # issue 10: www.www.example.com gave www.example.com, which gave example.com
    "www.www.example.com": "example.com",
    "WWW.www.Example.com.": "example.com",
    # issue 11: one page, several spellings, paid several times
    "https://example.com/café": "https://example.com/caf%C3%A9",
    "https://example.com/caf%C3%A9": "https://example.com/caf%C3%A9",
    "https://example.com/caf%c3%a9": "https://example.com/caf%C3%A9",
    "https://example.com/~user": "https://example.com/~user",
    "https://example.com/%7Euser": "https://example.com/~user",
    "https://example.com/%7euser": "https://example.com/~user",
    # a zero-width space pasted at the end of a page URL (it was stripped from domains only)
    "https://example.com/page\u200b": "https://example.com/page",
    "example.com\u200b": "example.com",
    # the other invisible characters, in pages and domains alike
    "https://exa\u00admple.com/a\u200cb\u200d\u2060\ufeff": "https://example.com/ab",
    "\ufeffwww.bü\u200bcher.de": "xn--bcher-kva.de",
    # RFC 3986 s.6.2.2 and WHATWG: scheme and host case, default port, IDN, query encoding, dot segments
    "HTTPS://Example.COM:443/A/./b/../C?Q=%2b": "https://example.com/A/C?Q=%2B",
    "http://example.com:80": "http://example.com/",
    "https://bücher.de/straße?q=ä": "https://xn--bcher-kva.de/stra%C3%9Fe?q=%C3%A4",
    "https://example.com/a%zz": "https://example.com/a%25zz",
    "https://example.com/%41%2F%3f": "https://example.com/A%2F%3F",
    # real new TLDs still pass: they are in the Public Suffix List
    "my.zip": "my.zip",
    "web.dev": "web.dev",
    "https://www.example.zip/": "https://www.example.zip/",
    # the documentation TLD (RFC 2606), which the fixtures and examples use, though in no PSL rule
    "https://www.plumber.example/": "https://www.plumber.example/",
    "www.shop.example": "shop.example",
}


@pytest.mark.parametrize(("raw", "expected"), list(SAME_FORM.items()), ids=repr)
def test_issue_example_has_its_normal_form(raw: str, expected: str) -> None:
    assert normalise_target(raw) == expected
    assert normalise_target(expected) == expected


def test_the_three_cafe_spellings_are_one_target_paid_once() -> None:
    spellings = [
        "https://example.com/café",
        "https://example.com/caf%C3%A9",
        "https://example.com/caf%c3%a9",
        "https://example.com/caf%c3%a9\u200b",
    ]
    target_set = normalise_targets(spellings)
    assert target_set.targets == ["https://example.com/caf%C3%A9"]
    assert target_set.inputs_of("https://example.com/caf%C3%A9") == spellings  # the user's own strings


REFUSED = {
    # not domains: the Public Suffix List's '*' rule used to accept any unknown ending
    "targets.txt": "looks like a file name, not a domain ('.txt' is no top-level domain)",
    "index.html": "looks like a file name, not a domain ('.html' is no top-level domain)",
    "sitemap.xml": "looks like a file name, not a domain ('.xml' is no top-level domain)",
    "https://sitemap.xml/": "looks like a file name",
    "shop.example.notatld": "unknown top-level domain '.notatld'",
    "intranet.test": "unknown top-level domain '.test'",
    # hints that make sense
    "/tmp/x": "looks like a file path, not a target: to read targets from a file, pass its URI as targets, "
    "e.g. 'file:///tmp/x'",
    "data/targets.txt": "looks like a file path",
    "C:\\data\\targets.txt": "e.g. 'file:///C:/data/targets.txt'",
    "http//example.com": "malformed scheme 'http//': did you mean 'http://example.com'?",
    "https:example.com/a": "did you mean 'https://example.com/a'?",
    "http:///example.com": "did you mean 'http://example.com'?",
    "example.com/page": "did you mean 'https://example.com/page'?",
    "example.com?q=1": "did you mean 'https://example.com?q=1'?",
    "example.com:8080": "did you mean 'https://example.com:8080/'? (domains have no port)",
    "example.com:8080/page": "did you mean 'https://example.com:8080/page'?",
    "https://example.com/a\x00b": "control character inside",
}


@pytest.mark.parametrize(("raw", "reason"), list(REFUSED.items()), ids=repr)
def test_not_a_target_is_refused_with_a_hint(raw: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        normalise_target(raw)
    assert reason in str(info.value)
    assert "https:///" not in str(info.value)
    assert "https://http" not in str(info.value)


def test_values_in_reasons_are_cut_to_about_200_characters() -> None:
    long_path = "/" + "x" * 5_000_000
    with pytest.raises(ValueError) as info:
        normalise_target(f"example.com{long_path}")
    message = str(info.value)
    assert len(message) < 2 * MAX_SHOWN_LENGTH + 200
    assert "(5000020 characters)" in message  # says how long the value was
    with pytest.raises(ValueError) as info:
        normalise_target("a" * 300 + ".txt")
    assert len(str(info.value)) < 3 * MAX_SHOWN_LENGTH


def test_load_chunk_group_accepts_its_own_output_over_www_www() -> None:
    """Issue 10: a mapped fetch group failed for good over one non-idempotent entry."""
    target_set = normalise_targets(["www.www.example.com", "https://example.com/caf%c3%a9", "b.dev"])
    groups = plan_chunk_groups(target_set.targets, max_groups=1)
    stored: dict[str, str] = {}
    descriptors = write_chunk_groups(
        groups, target_set.inputs, groups_uri="mem://groups", write_text=stored.__setitem__
    )
    loaded, chunks, _ = load_chunk_group(descriptors[0], stored.__getitem__)
    assert loaded.targets == ["example.com", "https://example.com/caf%C3%A9", "b.dev"]
    assert chunks == [loaded.targets]
    assert loaded.inputs_of("example.com") == ["www.www.example.com"]


@pytest.mark.parametrize(
    ("sent", "echo"),
    [
        ("https://example.com/caf%C3%A9", "https://example.com/caf%c3%a9"),
        ("https://example.com/caf%C3%A9", "https://EXAMPLE.com:443/café"),
        ("https://example.com/~user", "https://example.com/%7Euser"),
        ("https://example.com/a-b", "https://example.com/%61%2D%62"),
        ("example.com", "EXAMPLE.COM"),
        ("example.com", "https://www.example.com/"),
    ],
)
def test_an_item_echoed_in_another_spelling_answers_its_target(sent: str, echo: str) -> None:
    item = {"url": echo, "backlinks": 1}
    matched = match_items([item], [sent, "other.com"])
    assert matched.by_target == {sent: item}
    assert matched.unmatched == []
    assert matched.missing == ["other.com"]


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

_INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_IDN_LABEL = st.sampled_from(["bücher", "café", "пример", "例え", "straße", "ñandú", "xn--bcher-kva"])
_SUFFIX = st.sampled_from(["com", "co.uk", "de", "zip", "dev", "github.io", "blogspot.com", "xn--p1ai", "рф"])


@st.composite
def hosts(draw: st.DrawFn) -> str:
    """A host in some spelling: random case, ``www.`` prefixes, IDN labels, a trailing dot."""
    labels = draw(st.lists(st.one_of(_LABEL, _IDN_LABEL), min_size=1, max_size=3))
    host = ".".join([*["www"] * draw(st.integers(0, 3)), *labels, draw(_SUFFIX)])
    host = "".join(c.upper() if draw(st.booleans()) and c.isascii() else c for c in host)
    return host + ("." if draw(st.booleans()) else "")


def _escape(char: str, upper: bool) -> str:
    escaped = "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return escaped if upper else escaped.lower()


_PATH_CHARS = st.sampled_from([*"abcXYZ019-._~!$&'()*+,;=:@/é日ü%", "%41", "%7e", "%2F", "%3f", "%20"])
_QUERY_CHARS = st.sampled_from([*"abcXYZ019-._~!$'()*,:@/?=&+é日%", "%41", "%2b", "%26", "%3D", "%20"])


@st.composite
def urls(draw: st.DrawFn) -> str:
    """A page URL in some spelling: scheme case, default port, odd escapes, dot segments, a fragment."""
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    port = draw(st.sampled_from(["", "", ":443" if scheme.lower() == "https" else ":80", ":8443"]))
    segments = draw(
        st.lists(
            st.one_of(st.just("."), st.just(".."), st.lists(_PATH_CHARS, max_size=6).map("".join)), max_size=4
        )
    )
    path = "".join("/" + segment for segment in segments)
    query = draw(
        st.one_of(st.just(""), st.lists(_QUERY_CHARS, max_size=8).map("".join).map(lambda q: "?" + q))
    )
    fragment = draw(st.sampled_from(["", "#top", "#"]))
    return f"{scheme}://{draw(hosts())}{port}{path}{query}{fragment}"


def _with_invisibles(draw: st.DrawFn, text: str) -> str:
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(_INVISIBLE) + text[at:]
    return text


@st.composite
def targets(draw: st.DrawFn) -> str:
    text = draw(st.one_of(urls(), hosts()))
    return _with_invisibles(draw, text)


@PROPERTY_SETTINGS
@given(targets())
@example("www.www.example.com")
@example("https://e.com/%%341")
@example("https://e.com/a/%2e%2E/%2e")
def test_the_normal_form_is_a_fixed_point(raw: str) -> None:
    try:
        once = normalise_target(raw)
    except ValueError:
        return  # refused: nothing to hold
    assert normalise_target(once) == once
    assert normalise_target(respell_url(once)) == once  # the emulator's respelled echo meets it again
    assert once.isascii()
    assert not any(c.isspace() for c in once)
    if "://" not in once:
        assert not once.startswith("www.") or once.count(".") == 2  # only www.<public suffix> keeps it


_ANY_TAIL = st.sampled_from(
    [
        *"/\\.%-_~?#&=@[]:09afAFxyz é日\u200b\u00ad\x00+;,'!$*()|^`{}\"<>",
        *("%2e", "%2E%2e", "%25", "%7e", "%2F", "%3f", "%23", "/./", "/../", "%C3%A9", "%c3", "%%"),
    ]
)
_ANY_START = st.sampled_from(
    [
        "https://example.com",
        "HTTP://www.Example.co.uk:80",
        "https://bücher.de:443",
        "http://x.zip:8080",
        "www.www.a.dev",
    ]
)


@PROPERTY_SETTINGS
@given(_ANY_START, st.lists(_ANY_TAIL, max_size=25).map("".join))
def test_any_accepted_tail_is_a_fixed_point(start: str, tail: str) -> None:
    """Odd characters, broken escapes and dot segments after a valid start: accepted once, stable."""
    try:
        once = normalise_target(start + tail)
    except ValueError:
        return
    assert normalise_target(once) == once


_UNRESERVED = "abcXYZ019-._~"


@st.composite
def page_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one page: each character of its path and query plain or escaped (any case),
    host case, default port, invisible characters and a fragment varying."""
    host = draw(st.sampled_from(["example.com", "bücher.de", "shop.example.co.uk"]))
    chars = st.sampled_from([*_UNRESERVED, "é", "日", "ü", "/"])
    path = "/" + draw(st.text(chars, max_size=10))
    query = draw(st.text(st.sampled_from([*_UNRESERVED, "é", "="]), max_size=6))

    def spell(text: str, *, keep: str) -> str:
        out = []
        for char in text:
            if char in keep or not draw(st.booleans()):
                out.append(char)
            else:
                out.append(_escape(char, draw(st.booleans())))
        return "".join(out)

    def one() -> str:
        shown = "".join(c.upper() if c.isascii() and draw(st.booleans()) else c for c in host)
        port = draw(st.sampled_from(["", ":443"]))
        url = f"HTTPS://{shown}{port}{spell(path, keep='/')}"
        if query:
            url += "?" + spell(query, keep="=")
        url += draw(st.sampled_from(["", "#x"]))
        return _with_invisibles(draw, url)

    return one(), one()


@PROPERTY_SETTINGS
@given(page_spellings())
def test_spellings_of_one_page_meet_in_one_form(pair: tuple[str, str]) -> None:
    first, second = pair
    assert normalise_target(first) == normalise_target(second)


_FAST_PATH = st.sampled_from([*"abcXYZ019-._~!$&'()*+,;=:@/", "%20", "%2F", "%C3%A9", "%3C", "%25", "%7C"])
_FAST_QUERY = st.sampled_from([*"abcXYZ019-._~!$&'()*+,;=:@/?", "%20", "%26", "%3D", "%2B", "%C3%A9"])


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["http", "https"]),
    st.sampled_from(["example.com", "www.example.co.uk", "a-b.github.io"]),
    st.lists(_FAST_PATH, max_size=20).map("".join),
    st.lists(_FAST_QUERY, max_size=12).map("".join),
)
def test_the_fast_path_gives_what_the_full_path_gives(scheme: str, host: str, path: str, query: str) -> None:
    text = f"{scheme}://{host}/{path}" + (f"?{query}" if query else "")
    fast = normalise_target(text)
    assert fast == _normalise_page(text, scheme)
    if _PLAIN_PAGE_RE.fullmatch(text) and "/." not in text:
        assert fast == text  # the fast path's inputs are already normal


@PROPERTY_SETTINGS
@given(urls())
def test_a_normal_page_takes_the_fast_path_unchanged(raw: str) -> None:
    try:
        once = normalise_target(raw)
    except ValueError:
        assume(False)
        return
    scheme = once.partition(":")[0]
    assert _normalise_page(once, scheme) == once


# ---------------------------------------------------------------------------------------------
# Items echoed in another spelling, against the emulator
# ---------------------------------------------------------------------------------------------

#: Fault seed under which a ``drop_items`` share of 0.5 hits the first request and not the follow-up.
FOLLOW_UP_SEED = 1
#: Three pages the emulated database knows, whose echo changes under every rule of the form.
ECHO_TARGETS = [f"https://shop{i}.example.com/caf%C3%A9/~user{i}" for i in range(3)]


def _fault_injection(emulator: EmulatorServer, settings: dict[str, Any] | None) -> None:
    route = f"{emulator.url}/_emulator/fault-injection"
    reply = requests.put(route, json=settings, timeout=5) if settings else requests.delete(route, timeout=5)
    assert reply.status_code == 200, reply.text


def _fetch_with_echoes(
    emulator: EmulatorServer, conn_id: str, **settings: Any
) -> tuple[ChunkOutcome, list[list[str]]]:
    """Fetch :data:`ECHO_TARGETS` as one chunk with respelled item urls; return what was asked."""
    target_set = normalise_targets(ECHO_TARGETS)
    asked: list[list[str]] = []

    def post(piece: list[str]) -> TaskResult:
        asked.append(list(piece))
        return hook.bulk_pages_summary(piece, raw_items=True)

    hook = DataForSeoHook(conn_id, max_attempts=1)
    _fault_injection(emulator, {"respell_urls": True, **settings})
    try:
        outcome = fetch_chunk(0, target_set.targets, post, target_set, max_incomplete_retries=1)
    finally:
        _fault_injection(emulator, None)
        hook.close()
    return outcome, asked


def _row_targets(outcome: ChunkOutcome) -> list[str | None]:
    return [row["target"] for row in outcome.rows]


def test_respelled_echoes_match_their_targets(emulator: EmulatorServer, dataforseo_conn: str) -> None:
    outcome, asked = _fetch_with_echoes(emulator, dataforseo_conn)
    assert _row_targets(outcome) == ECHO_TARGETS
    assert outcome.unmatched_items == 0
    assert outcome.missing_targets == []
    assert asked == [ECHO_TARGETS]
    echoed = [json.loads(bytes(row["item"]))["url"] for row in outcome.rows]
    assert echoed[0] == "HTTPS://SHOP0.EXAMPLE.COM:443/café/%7euser0"  # really another spelling


def test_a_follow_up_never_re_asks_a_target_a_reply_answered(
    emulator: EmulatorServer, dataforseo_conn: str
) -> None:
    """Issue 11: an incomplete reply whose items echo another spelling gave 3 targets -> 4 rows."""
    outcome, asked = _fetch_with_echoes(
        emulator, dataforseo_conn, rates={"drop_items": 0.5}, drop_share=0.0, seed=FOLLOW_UP_SEED
    )
    assert len(asked) == 2
    assert asked[0] == ECHO_TARGETS
    assert len(asked[1]) == 1  # only the target the first reply left without an item
    assert sorted(_row_targets(outcome)) == sorted(ECHO_TARGETS)  # 3 targets -> 3 rows
    assert outcome.unmatched_items == 0
    assert outcome.missing_targets == []


def test_a_follow_up_that_also_loses_the_item_asks_only_for_it(
    emulator: EmulatorServer, dataforseo_conn: str
) -> None:
    outcome, asked = _fetch_with_echoes(emulator, dataforseo_conn, rates={"drop_items": 1.0}, drop_share=0.0)
    answered = [target for target in _row_targets(outcome) if target is not None]
    assert len(answered) == len(set(answered)) == 2  # every row once, matched to its target
    assert outcome.unmatched_items == 0
    assert asked[1:] == [outcome.missing_targets]  # the follow-up asked for the lost target alone
    assert set(answered) | set(outcome.missing_targets) == set(ECHO_TARGETS)


def test_a_5_mb_entry_is_not_echoed_whole_in_the_error() -> None:
    """Issue 11: a 5 MB line was echoed whole in the exception (5,000,096 characters)."""
    with pytest.raises(InvalidTargetsError) as info:
        normalise_targets(["ok.com", "x" * 5_000_000, "y" * 5_000_000 + ".com/page"])
    message = str(info.value)
    assert len(message) < 1500
    assert "(5000000 characters)" in message  # says how long the value was
    assert [position for position, _, _ in info.value.errors] == [1, 2]
    assert info.value.errors[1][1] == "y" * 5_000_000 + ".com/page"  # the value itself is kept


@settings(max_examples=100, deadline=None)
@given(st.lists(targets(), min_size=1, max_size=8))
def test_a_handed_over_target_set_normalises_to_itself(raw: list[str]) -> None:
    """Issue 10: the sensor hands normalised targets to its trigger, which normalises them again:
    both must key the baseline alike (no second form, no input recorded twice)."""
    try:
        first = normalise_targets(raw)
    except InvalidTargetsError:
        return
    again = normalise_targets(first.targets)
    assert again.targets == first.targets
    assert again.inputs == {}  # every target is already its own input


def test_the_emulator_setting_respell_urls_round_trips_and_is_checked() -> None:
    config = FaultConfig.from_json({"respell_urls": True})
    assert config.active and config.respell_urls
    assert FaultConfig.from_json(config.to_json()) == config
    assert "respell_urls" not in FaultConfig().to_json()  # off: the JSON is as before
    with pytest.raises(FaultConfigError, match="respell_urls must be true or false"):
        FaultConfig.from_json({"respell_urls": "yes"})
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    from_cli = config_from_args(parser.parse_args(["--respell-urls"]))
    assert from_cli is not None and from_cli.respell_urls
    assert "item urls respelled" in describe(from_cli)


def test_sensor_and_trigger_key_the_same_baseline() -> None:
    """Issue 10: the sensor normalised www.www.example.com to www.example.com and the trigger that to
    example.com, so they keyed different baselines and alerted the same changes on every run."""
    from airflow_provider_dataforseo.baseline import baseline_key
    from airflow_provider_dataforseo.operators.bulk_pages_summary import read_targets

    raw = ["www.www.example.com", "https://example.com/café\u200b", "https://example.com/%7Euser"]
    sensor_side = read_targets(raw)  # BacklinksChangeSensor._target_set
    trigger_side = read_targets(list(sensor_side.targets))  # what it hands the trigger, read again
    assert trigger_side.targets == sensor_side.targets
    fields = ["lost_date", "broken_backlinks"]
    assert baseline_key(trigger_side.targets, fields, True) == baseline_key(sensor_side.targets, fields, True)
