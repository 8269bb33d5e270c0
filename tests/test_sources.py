"""sources.py: every target list SEO people have (issue 11 items 1-3, 6, 8; issue 12 item 7)."""

from __future__ import annotations

import codecs
import gzip
import http.server
import io
import json
import os
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.sources import (
    TargetSourceError,
    check_allowed,
    coerce_targets,
    is_sitemap_uri,
    is_storage_uri,
    is_under_root,
    local_path,
    open_source,
    parse_target_file,
)
from airflow_provider_dataforseo.targets import normalise_target

if TYPE_CHECKING:
    from collections.abc import Iterator

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "targets"
FIXTURE_FILES = sorted(
    p.name for p in FIXTURES.iterdir() if p.is_file() and (FIXTURES / f"{p.name}.expected").exists()
)
EXAMPLE_ORIGIN = "https://www.example.com/"  # the sitemap index's origin, mapped to FIXTURES


def open_local(uri: str) -> IO[bytes]:
    """The opener the tests give the pure module: local files, and the fixtures' web origin."""
    if uri.startswith(EXAMPLE_ORIGIN):
        return open(FIXTURES / uri[len(EXAMPLE_ORIGIN) :], "rb")
    path = local_path(uri)
    assert path is not None, uri
    return open(path, "rb")


def read(value: object, **options: Any) -> list[object]:
    options.setdefault("open_binary", open_local)
    return list(open_source(value, **options))


def uri_of(path: Path) -> str:
    return path.as_uri()


# ---------------------------------------------------------------------------------------------
# The fixture folder: one file per real-world export, each with its expected targets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_fixture_yields_its_expected_targets(name: str) -> None:
    expected = (FIXTURES / f"{name}.expected").read_text(encoding="utf-8").splitlines()
    args_file = FIXTURES / f"{name}.args.json"
    args = json.loads(args_file.read_text()) if args_file.exists() else {}
    entries = read(
        uri_of(FIXTURES / name), roots=[uri_of(FIXTURES) + "/", EXAMPLE_ORIGIN], trusted=False, **args
    )
    assert entries == expected
    for entry in entries:  # every expected entry is a target the API takes
        normalise_target(entry)


ERROR_FIXTURES = sorted(
    p.name for p in FIXTURES.iterdir() if p.is_file() and (FIXTURES / f"{p.name}.error").exists()
)


def open_fixture(uri: str) -> IO[bytes]:
    """:func:`open_local`, a missing file refused as ``targets_io.open_target_uri`` refuses it."""
    try:
        return open_local(uri)
    except FileNotFoundError:
        raise TargetSourceError(f"targets names {uri}, which does not exist") from None


@pytest.mark.parametrize("name", ERROR_FIXTURES)
def test_fixture_fails_before_any_request_with_its_expected_error(name: str) -> None:
    """``NAME.error``: fragments the error must hold, one a line (nothing is read as a target)."""
    fragments = (FIXTURES / f"{name}.error").read_text(encoding="utf-8").splitlines()
    source = open_source(
        uri_of(FIXTURES / name),
        open_binary=open_fixture,
        roots=[uri_of(FIXTURES) + "/", EXAMPLE_ORIGIN],
        trusted=False,
    )
    with pytest.raises((TargetSourceError, InvalidTargetsError)) as info:
        _normalise(source)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_the_fixture_folder_covers_every_export_of_the_issue() -> None:
    assert len(FIXTURE_FILES) >= 14
    for fragment in ("gsc", "ahrefs", "semrush", "screaming_frog", "majestic", "cp1252", "semicolon"):
        assert any(fragment in name for name in FIXTURE_FILES), fragment
    assert any(name.endswith(".gz") for name in FIXTURE_FILES)
    assert {"sitemap.xml", "sitemap_index.xml", "sitemap-posts.xml.gz"} <= set(FIXTURE_FILES)
    ahrefs = (FIXTURES / "ahrefs_backlinks_utf16le.tsv").read_bytes()
    assert ahrefs.startswith(codecs.BOM_UTF16_LE)
    excel = (FIXTURES / "excel_cp1252.csv").read_bytes()
    assert b"b\xfccher.de" in excel
    with pytest.raises(UnicodeDecodeError):
        excel.decode("utf-8")


@pytest.mark.parametrize(
    ("name", "columns"),
    [
        ("semrush_backlinks.csv", ("'Source url'", "'Target url'")),
        ("majestic_backlinks.csv", ("'TargetURL'", "'SourceURL'")),
    ],
)
def test_two_known_url_columns_ask_for_targets_column(name: str, columns: tuple[str, str]) -> None:
    with pytest.raises(TargetSourceError) as info:
        read(uri_of(FIXTURES / name))
    message = str(info.value)
    assert str(FIXTURES / name) in message and "line 1" in message and "targets_column" in message
    assert all(column in message for column in columns)


def test_targets_column_by_index_and_by_name_any_case() -> None:
    uri = uri_of(FIXTURES / "semrush_backlinks.csv")
    by_name = read(uri, column="  TARGET URL ")
    assert by_name == read(uri, column=3) == read(uri, column="3")
    assert by_name == ["https://plumber.example.com/", "https://plumber.example.com/contact"]
    with pytest.raises(TargetSourceError, match="targets_column='Landing page'"):
        read(uri, column="Landing page")


# ---------------------------------------------------------------------------------------------
# Issue 11 "What was found": each example
# ---------------------------------------------------------------------------------------------


def test_separators_never_lose_targets_in_files_and_text() -> None:
    assert parse_target_file("a.com, b.com, c.com\n") == ["a.com", "b.com", "c.com"]
    assert parse_target_file("https://a.com/x,https://b.com/y\n") == ["https://a.com/x", "https://b.com/y"]
    assert coerce_targets("https://a.com/,b.com,c.com") == ["https://a.com/", "b.com", "c.com"]
    # the same rules for text and files
    for text in ("a.com, b.com, c.com", "https://a.com/x,https://b.com/y", "https://a.com/,b.com,c.com"):
        assert coerce_targets(text) == parse_target_file(text + "\n")
    # URLs keep their commas where nothing else is meant
    assert coerce_targets("https://x.com/?ids=a.com,b.com") == ["https://x.com/?ids=a.com,b.com"]


def test_a_headerless_search_console_row_is_its_url_not_the_whole_row() -> None:
    text = 'https://plumber.example.com/,"2,100",80\nhttps://plumber.example.com/a,"1,050",7\n'
    assert parse_target_file(text) == ["https://plumber.example.com/", "https://plumber.example.com/a"]


def test_known_export_column_names_are_read_not_the_last_column() -> None:
    for header in ("Top pages", "Target page", "Site", "Address", "Target URL", "top_pages", "ADDRESS"):
        text = f"{header},Position,Title 1\nhttps://a.example.com/,3,Home\n"
        assert parse_target_file(text) == ["https://a.example.com/"], header


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # two target columns beside data, no header: which one?
        (
            "https://a.example.com/,https://b.example.com/,5\nhttps://c.example.com/,https://d.example.com/,6\n",
            ["columns 0, 1"],
        ),
        # no column holds targets
        ("Position,Clicks\n1,2\n3,4\n", ["no column holds targets", "line 1"]),
        # a column mixing targets with other values beside a data column
        ("1,a.example.com\n2,not a target\n", ["column 1", "line 2", "whitespace inside"]),
    ],
)
def test_undecidable_columns_fail_naming_the_line_and_what_to_set(text: str, fragments: list[str]) -> None:
    with pytest.raises(TargetSourceError) as info:
        parse_target_file(text)
    message = str(info.value)
    assert "targets_column" in message
    for fragment in fragments:
        assert fragment in message


def test_file_errors_give_the_file_s_own_line_numbers(tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("# my targets\n\nexample.com\n\n# next\nexample.com/page\nb.com\n")
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(open_source(uri_of(listing), open_binary=open_local))
    assert [where for where, _, _ in info.value.errors] == ["line 6"]
    assert str(listing) in str(info.value)
    assert "line 6: 'example.com/page'" in str(info.value)


def test_list_and_text_errors_give_the_position_and_the_line() -> None:
    source = open_source(["a.com", "bad value", "b.com"])
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(source)
    assert info.value.errors[0][0] == "#1"
    source = open_source("a.com, b.com\nc.com, bad value")
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(source)
    assert info.value.errors[0][0] == "line 2, value 2"


def _normalise(source: Any) -> None:
    from airflow_provider_dataforseo.planning import normalise_stream

    try:
        normalise_stream(source)
    except InvalidTargetsError as exc:
        raise source.relabel(exc) from None


def test_a_five_megabyte_line_is_not_echoed_whole(tmp_path: Path) -> None:
    listing = tmp_path / "big.txt"
    listing.write_text("example.com\nhttps://example.com/" + "a" * 5_000_000 + "\n")
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(open_source(uri_of(listing), open_binary=open_local))
    assert len(str(info.value)) < 1000
    assert "line 2" in str(info.value) and "5000020 characters" in str(info.value)
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(open_source(["x" * 5_000_000]))
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("path", ["/tmp/targets.txt", "  /data/SEO lists/t.csv ", "./t.txt", "~/t.txt"])
def test_a_bare_path_is_told_to_be_a_file_uri(path: str) -> None:
    with pytest.raises(TargetSourceError, match="looks like a path") as info:
        coerce_targets(path)
    assert "'file:///" in str(info.value) and "https:///" not in str(info.value)
    assert "%20" in str(info.value) or " " not in path.strip()


def test_inputs_are_trimmed() -> None:
    assert coerce_targets("a.com, b.com,\tc.com") == ["a.com", "b.com", "c.com"]
    assert read(["  a.com ", "\tb.com"]) == ["a.com", "b.com"]


# ---------------------------------------------------------------------------------------------
# Sequences, generators, rows
# ---------------------------------------------------------------------------------------------


def test_any_sequence_or_generator_of_strings() -> None:
    assert coerce_targets(t for t in ("a.com", "b.com")) == ["a.com", "b.com"]
    assert coerce_targets(range(0)) == []
    assert coerce_targets(iter(["x.com"])) == ["x.com"]


def test_rows_are_refused_clearly_or_read_with_targets_column() -> None:
    with pytest.raises(TypeError, match="targets_column"):
        coerce_targets([("a.com", 1)])
    with pytest.raises(TypeError, match="targets_column"):
        coerce_targets([{"url": "a.com"}])
    assert coerce_targets([("a.com", 1), ("b.com", 2)], column=0) == ["a.com", "b.com"]
    assert coerce_targets([{"URL": "a.com"}, {"URL": "b.com"}], column="url") == ["a.com", "b.com"]
    with pytest.raises(TypeError, match="no key 'page'"):
        coerce_targets([{"url": "a.com"}], column="page")
    with pytest.raises(TypeError, match="must be ordered"):
        coerce_targets({"a.com"})


# ---------------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-16-le-bom", "utf-16-be-bom", "utf-32", "cp1252", "utf-8"]
)
def test_encodings_are_read(tmp_path: Path, encoding: str) -> None:
    text = "Domain,Visits\nbücher.de,12\nstraße.example.de,3\ncafé.example.fr,1\n"
    if encoding == "utf-16-le-bom":
        data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    elif encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    assert read(uri_of(path)) == ["bücher.de", "straße.example.de", "café.example.fr"]


def test_a_wrong_targets_encoding_names_the_file_the_line_and_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("a.com\nb.com\nbücher.de\n".encode("cp1252"))
    with pytest.raises(TargetSourceError) as info:
        read(uri_of(path), encoding="utf-8")
    message = str(info.value)
    assert (
        str(path) in message and "line 3" in message and "utf-8" in message and "targets_encoding" in message
    )
    assert read(uri_of(path), encoding="cp1252") == ["a.com", "b.com", "bücher.de"]
    with pytest.raises(TargetSourceError, match="not an encoding"):
        read(uri_of(path), encoding="klingon")


# ---------------------------------------------------------------------------------------------
# Allowed roots, paths (issue 12 items 4 and 7)
# ---------------------------------------------------------------------------------------------


def test_a_file_outside_the_allowed_roots_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    opened: list[str] = []

    def opener(uri: str) -> IO[bytes]:
        opened.append(uri)
        return open_local(uri)

    allowed = tmp_path / "lists"
    allowed.mkdir()
    (allowed / "t.txt").write_text("a.com\n")
    roots = [uri_of(allowed)]
    assert read(uri_of(allowed / "t.txt"), roots=roots, trusted=False, open_binary=opener) == ["a.com"]
    for outside in (
        "file:///etc/passwd",
        uri_of(allowed) + "/../secret.txt",
        uri_of(tmp_path / "listsX" / "t.txt"),
        "s3://aws_default@bucket/t.txt",
    ):
        with pytest.raises(TargetSourceError, match="outside the allowed roots"):
            read(outside, roots=roots, trusted=False, open_binary=opener)
    # a value rendered from params (not written in the DAG) with no roots at all
    with pytest.raises(TargetSourceError, match="no allowed_target_roots is set"):
        read("file:///etc/passwd", trusted=False, open_binary=opener)
    assert set(opened) == {uri_of(allowed / "t.txt")}  # nothing else was ever opened


def test_a_symlink_out_of_a_root_is_outside_it(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("a.com\n")
    os.symlink(tmp_path / "secret.txt", tmp_path / "root" / "link.txt")
    assert not is_under_root(uri_of(tmp_path / "root" / "link.txt"), uri_of(tmp_path / "root"))


@pytest.mark.parametrize(
    ("uri", "root", "inside"),
    [
        ("s3://aws_default@bucket/lists/a.csv", "s3://aws_default@bucket/lists/", True),
        ("s3://aws_default@bucket/lists/a.csv", "s3://aws_default@bucket/lists", True),
        ("s3://other@bucket/lists/a.csv", "s3://aws_default@bucket/lists/", False),
        ("s3://aws_default@bucket/listsX/a.csv", "s3://aws_default@bucket/lists", False),
        ("s3://aws_default@bucket/lists/../x.csv", "s3://aws_default@bucket/lists", False),
        ("https://WWW.example.com/sitemap.xml", "https://www.example.com/", True),
        ("http://www.example.com/sitemap.xml", "https://www.example.com/", False),
        ("https://www.example.com.evil.test/sitemap.xml", "https://www.example.com", False),
    ],
)
def test_is_under_root(uri: str, root: str, inside: bool) -> None:
    assert is_under_root(uri, root) is inside


def test_file_content_that_is_not_a_target_is_never_shown(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        "bin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
    )
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(open_source(uri_of(passwd), open_binary=open_local))
    message = str(info.value).split("\n", 1)[1]  # the lines after the one naming the file
    assert "daemon" not in message and "/bin" not in message and "root" not in message
    assert "line 1" in message and "line 2" in message and "value not shown" in message
    # a table of such lines: the column error names lines, not content
    shadow = tmp_path / "shadow.csv"
    shadow.write_text("secret one,1\nexample.com,2\n")
    with pytest.raises(TargetSourceError) as error:
        read(uri_of(shadow))
    assert "secret" not in str(error.value) and "line 1" in str(error.value)


def test_target_like_values_of_a_file_are_shown_cut_short(tmp_path: Path) -> None:
    listing = tmp_path / "t.txt"
    listing.write_text("example.com/page\n")
    with pytest.raises(InvalidTargetsError, match=r"line 1: 'example.com/page'"):
        _normalise(open_source(uri_of(listing), open_binary=open_local))


def test_check_allowed_trusts_a_literal_only_without_roots() -> None:
    check_allowed("file:///data/t.txt", None, trusted=True)
    with pytest.raises(TargetSourceError):
        check_allowed("file:///data/t.txt", ["file:///other/"], trusted=True)


def test_a_folder_or_a_missing_file_fails_at_once_naming_the_path(tmp_path: Path) -> None:
    from airflow_provider_dataforseo.targets_io import open_target_uri

    with pytest.raises(TargetSourceError, match="a folder") as info:
        open_target_uri(uri_of(tmp_path))
    assert str(tmp_path) in str(info.value)
    with pytest.raises(TargetSourceError, match="does not exist"):
        open_target_uri(uri_of(tmp_path / "nope.txt"))


def test_a_path_with_a_space_from_as_uri_is_found(tmp_path: Path) -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    folder = tmp_path / "SEO lists"
    folder.mkdir()
    (folder / "targets.txt").write_text("example.com\n")
    uri = (folder / "targets.txt").as_uri()
    assert "%20" in uri
    assert read_targets_streaming(uri).targets == ["example.com"]
    assert read_targets_streaming(uri, allowed_roots=[folder.as_uri()], trusted=False).targets == [
        "example.com"
    ]


def test_what_names_a_file_or_a_sitemap() -> None:
    assert is_storage_uri("file:///x.txt") and not is_storage_uri("https://x.com/")
    assert is_sitemap_uri("https://www.example.com/sitemap.xml")
    assert is_sitemap_uri("https://www.example.com/post-sitemap2.xml.gz")
    assert is_sitemap_uri("s3://b/x/urls.xml")
    assert not is_sitemap_uri("https://www.example.com/feed.xml")  # a page target
    assert not is_sitemap_uri("https://www.example.com/sitemap")
    assert not is_sitemap_uri("https://a.com/sitemap.xml,https://b.com/")


# ---------------------------------------------------------------------------------------------
# Sitemaps: safe parsing, limits, http from a loopback server
# ---------------------------------------------------------------------------------------------


def test_a_billion_laughs_sitemap_is_refused_without_expanding() -> None:
    with pytest.raises(TargetSourceError, match="unsafe XML"):
        read(uri_of(FIXTURES / "billion_laughs.xml"))


def test_sitemap_limits_fail_clearly() -> None:
    uri = uri_of(FIXTURES / "sitemap_index.xml")
    roots = [uri_of(FIXTURES), EXAMPLE_ORIGIN]
    with pytest.raises(TargetSourceError, match="more than 4 URLs"):
        read(uri, roots=roots, sitemap_max_urls=4)
    with pytest.raises(TargetSourceError, match="more than 2 sitemap files"):
        read(uri, roots=roots, sitemap_max_files=2)
    assert len(read(uri, roots=roots, sitemap_max_urls=5, sitemap_max_files=3)) == 5


def test_an_index_naming_another_host_needs_a_root() -> None:
    with pytest.raises(TargetSourceError, match="another host or bucket"):
        read(uri_of(FIXTURES / "sitemap_index.xml"))  # trusted, no roots: the index's own origin only
    with pytest.raises(TargetSourceError, match="outside the allowed roots"):
        read(uri_of(FIXTURES / "sitemap_index.xml"), roots=[uri_of(FIXTURES)])


def test_not_a_sitemap_or_malformed(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<html><body>hi</body></html>")
    (tmp_path / "b.xml").write_text("<urlset><url><loc>https://a.com/</loc>")
    with pytest.raises(TargetSourceError, match="not a sitemap"):
        read(uri_of(tmp_path / "a.xml"))
    with pytest.raises(TargetSourceError, match="not well-formed"):
        read(uri_of(tmp_path / "b.xml"))


@pytest.fixture
def sitemap_server() -> Iterator[str]:
    """http.server on 127.0.0.1, port 0, serving sitemaps whose index names the server's own URLs."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    ns = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    files["/sitemap_index.xml"] = (
        f'<?xml version="1.0"?><sitemapindex {ns}><sitemap><loc>{base}/sitemap-a.xml</loc></sitemap>'
        f"<sitemap><loc>{base}/sitemap-b.xml.gz</loc></sitemap></sitemapindex>"
    ).encode()
    files["/sitemap-a.xml"] = (
        f"<urlset {ns}><url><loc>https://shop.example.com/a</loc></url></urlset>".encode()
    )
    files["/sitemap-b.xml.gz"] = gzip.compress(
        f"<urlset {ns}><url><loc>https://shop.example.com/b</loc></url></urlset>".encode()
    )
    files["/sitemap_index_missing.xml"] = (
        f'<?xml version="1.0"?><sitemapindex {ns}><sitemap><loc>{base}/sitemap-a.xml</loc></sitemap>'
        f"<sitemap><loc>{base}/sitemap_missing.xml</loc></sitemap></sitemapindex>"
    ).encode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_sitemap_index_over_http_is_followed(sitemap_server: str) -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    uri = f"{sitemap_server}/sitemap_index.xml"
    assert read_targets_streaming(uri).targets == ["https://shop.example.com/a", "https://shop.example.com/b"]
    roots = [f"{sitemap_server}/"]
    got = read_targets_streaming(uri, allowed_roots=roots, trusted=False).targets
    assert got == ["https://shop.example.com/a", "https://shop.example.com/b"]
    with pytest.raises(TargetSourceError, match="outside the allowed roots"):
        read_targets_streaming(uri, allowed_roots=["https://www.example.com/"], trusted=False)
    with pytest.raises(TargetSourceError, match="HTTP 404"):
        read_targets_streaming(f"{sitemap_server}/missing-sitemap.xml")


# ---------------------------------------------------------------------------------------------
# Property: no target lost, none invented, whatever the format
# ---------------------------------------------------------------------------------------------

HOSTS = ["example.com", "bücher.de", "shop.example.org", "a-b.co.uk", "docs.example.net"]
PATHS = ["", "/", "/a", "/b/c?x=1", "/p?ids=a.com,b.com", "/café", "/x,y"]


@st.composite
def target_lists(draw: st.DrawFn) -> list[str]:
    count = draw(st.integers(1, 12))
    targets = []
    for _ in range(count):
        host = draw(st.sampled_from(HOSTS))
        if draw(st.booleans()):
            targets.append(host)
        else:
            targets.append(
                f"{draw(st.sampled_from(['http', 'https']))}://{host}{draw(st.sampled_from(PATHS))}"
            )
    return targets


def _csv_cell(text: str, delimiter: str, quote_all: bool) -> str:
    if quote_all or delimiter in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


@settings(max_examples=120, deadline=None)
@given(
    targets=target_lists(),
    layout=st.sampled_from(["list", "header", "header_last", "rank", "gsc"]),
    delimiter=st.sampled_from([",", "\t", ";"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    quote_all=st.booleans(),
    packed=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    blank=st.booleans(),
)
def test_written_in_any_format_read_back_equal(
    targets: list[str],
    layout: str,
    delimiter: str,
    encoding: str,
    quote_all: bool,
    packed: bool,
    newline: str,
    blank: bool,
) -> None:
    cell = lambda text: _csv_cell(text, delimiter, quote_all)  # noqa: E731
    rows: list[str] = []
    if layout == "list":
        rows = [cell(t) for t in targets]
    elif layout == "header":
        rows = [delimiter.join(["Target URL", "Clicks", "Title 1"])]
        rows += [
            delimiter.join([cell(t), str(i * 1000), cell(f"Page {i}, home")]) for i, t in enumerate(targets)
        ]
    elif layout == "header_last":
        rows = [delimiter.join(["Position", "Address"])]
        rows += [delimiter.join([str(i + 1), cell(t)]) for i, t in enumerate(targets)]
    elif layout == "rank":
        rows = [delimiter.join([str(i + 1), cell(t)]) for i, t in enumerate(targets)]
    else:  # gsc without a header: url, clicks (with a thousands separator), impressions
        rows = [
            delimiter.join([cell(t), _csv_cell(f"{i},{i}00", delimiter, True), str(i)])
            for i, t in enumerate(targets)
        ]
    if blank:
        rows.insert(1, "")
        rows.insert(0, "# exported by a tool")
    text = newline.join(rows) + newline
    data = text.encode(encoding)
    if packed:
        data = gzip.compress(data)
    assert list(open_source("file:///t", open_binary=lambda _: io.BytesIO(data))) == targets


# ---------------------------------------------------------------------------------------------
# A user-tester's findings after issue 11 (each example, and its kind)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a.com,b.com c.com",
        "a.com, b.com c.com",
        "a.com\tb.com c.com",
        "a.com;b.com c.com",
        "a.com, http//b.com",
    ],
)
def test_a_cell_that_looks_like_a_target_is_never_an_ignored_column(text: str) -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    assert len(coerce_targets(text)) >= 2  # nothing thrown away as "a column holding no target"
    with pytest.raises(InvalidTargetsError) as info:
        read_targets_streaming(text)
    assert "line 1, value 2" in str(info.value)
    assert parse_target_file(text + "\n") == coerce_targets(text)  # files and text alike


def test_targets_run_together_get_the_hint_to_split_them() -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    with pytest.raises(InvalidTargetsError) as info:
        read_targets_streaming("a.com,b.com c.com")
    assert "line 1, value 2: 'b.com c.com': whitespace inside: put one target per line, or separate" in str(
        info.value
    )
    with pytest.raises(InvalidTargetsError, match="give each target as its own item"):
        read_targets_streaming(["a.com", "b.com c.com"])


def test_columns_of_plain_non_targets_beside_targets_are_still_a_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert coerce_targets("1,google.com\n2,b.com") == ["google.com", "b.com"]
    assert parse_target_file('http://example.com/;"2,100";80\n') == ["http://example.com/"]
    assert coerce_targets("7,a.com b.com") == ["a.com b.com"]  # the rank beside it: read, and refused
    assert "ignoring column(s)" in caplog.text


def test_inline_text_errors_give_1_based_lines() -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    with pytest.raises(InvalidTargetsError) as info:
        read_targets_streaming("a.com\n\nhttp//b.com")
    assert "line 3: 'http//b.com': malformed scheme 'http//': did you mean 'http://b.com'?" in str(info.value)
    with pytest.raises(InvalidTargetsError) as info:
        read_targets_streaming("http//b.com")
    assert "line 1: 'http//b.com'" in str(info.value) and "#0" not in str(info.value)


def _read_bytes(data: bytes) -> list[object]:
    return list(open_source("file:///t.txt", open_binary=lambda _: io.BytesIO(data)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"https://example.com/\xe8\n", "https://example.com/%C3%A8"),  # was cp1006: /%EF%BB%9F
        (b"https://example.pt/a\xe7\xe3o\n", "https://example.pt/a%C3%A7%C3%A3o"),  # was big5
        ("größe.example.de\n".encode("cp1252"), normalise_target("größe.example.de")),
        ("https://example.fr/€-prix\n".encode("cp1252"), "https://example.fr/%E2%82%AC-prix"),
    ],
)
def test_short_western_files_are_read_as_windows_1252(
    data: bytes, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    [entry] = _read_bytes(data)
    assert normalise_target(str(entry)) == expected
    assert "read as cp1252" in caplog.text and "targets_encoding" in caplog.text


def test_a_three_line_windows_1252_file_is_logged_as_cp1252(caplog: pytest.LogCaptureFixture) -> None:
    read(uri_of(FIXTURES / "cp1252_three_lines.csv"))
    assert "read as cp1252" in caplog.text and "cp1250" not in caplog.text.split("(e.g.")[0]


def test_a_confident_guess_is_used_and_named_else_targets_encoding_is_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    russian = "Привет мир это пример текста на русском языке\nhttps://example.ru/страница\n"
    assert _read_bytes(russian.encode("cp1251"))[-1] == "https://example.ru/страница"
    assert "read as cp1251" in caplog.text and "guessed by charset-normalizer" in caplog.text
    assert "set targets_encoding" in caplog.text
    for short in ("https://example.ru/новости\n".encode("cp1251"), "żółć.example.pl\n".encode("cp1250")):
        with pytest.raises(TargetSourceError, match="set targets_encoding") as info:
            _read_bytes(short)
        assert "cannot be told for sure" in str(info.value)


def test_windows_1252_plausibility() -> None:
    from airflow_provider_dataforseo.sources import plausible_western

    assert plausible_western("bücher.de\nstraße.de\n")
    assert plausible_western("https://example.com/è\r\n")
    assert not plausible_western("ïðèâåò.ru")  # Cyrillic bytes read as Windows-1252
    assert not plausible_western("¿ó³æ.pl")  # Polish bytes read as Windows-1252
    assert not plausible_western("a.com\x01\n")  # a control character
    with pytest.raises(UnicodeDecodeError):  # the undefined bytes never reach the check
        b"a\x81b".decode("cp1252")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_detected(encoding: str, caplog: pytest.LogCaptureFixture) -> None:
    text = "a.com\r\nb.com\r\nbücher.de\r\n"
    assert _read_bytes(text.encode(encoding)) == ["a.com", "b.com", "bücher.de"]
    assert f"read as {encoding}" in caplog.text


def test_nul_characters_fail_naming_the_encoding_not_line_by_line() -> None:
    with pytest.raises(TargetSourceError) as info:
        _read_bytes("a.com\nb.com\n".encode("utf-32-le"))
    message = str(info.value)
    assert "NUL characters" in message and "utf-8" in message and "targets_encoding" in message
    with pytest.raises(TargetSourceError, match="NUL characters when read as cp1252"):
        list(
            open_source("file:///t.txt", open_binary=lambda _: io.BytesIO(b"a.com\x00\n"), encoding="cp1252")
        )


def test_file_values_that_attempt_a_target_are_shown_with_their_hint(tmp_path: Path) -> None:
    listing = tmp_path / "t.txt"
    listing.write_text("a.com\nhttp//b.com\nhttps:/c.com\nb.com c.com\n" + "https:/" + "x" * 300 + ".com\n")
    with pytest.raises(InvalidTargetsError) as info:
        _normalise(open_source(uri_of(listing), open_binary=open_local))
    message = str(info.value)
    assert "line 2: 'http//b.com': malformed scheme 'http//': did you mean 'http://b.com'?" in message
    assert "line 3: 'https:/c.com': malformed scheme 'https:/'" in message
    assert "line 4: 'b.com c.com': whitespace inside: put one target per line" in message
    assert "line 5: 'https:/xxx" in message and "311 characters" in message
    assert "value not shown" not in message


def test_a_missing_sitemap_names_the_index_and_entry_listing_it(sitemap_server: str) -> None:
    from airflow_provider_dataforseo.targets_io import read_targets_streaming

    with pytest.raises(TargetSourceError) as info:
        read_targets_streaming(f"{sitemap_server}/sitemap_index_missing.xml")
    message = str(info.value)
    assert f"{sitemap_server}/sitemap_missing.xml answered HTTP 404" in message
    assert f"named by entry 2 of the sitemap index {sitemap_server}/sitemap_index_missing.xml" in message
