"""Targets: read, normalise, validate, de-duplicate, and plan them into request chunks.

Pure module: no Airflow import, no network. The rules come from the endpoint's doc
(``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/``, field ``targets``):

- a domain or subdomain is given WITHOUT ``https://`` and ``www.``;
- a page is given as an absolute URL with ``http://`` or ``https://``;
- one request holds at most 1000 targets from at most 100 different main domains.

Normalisation (:func:`normalise_target`):

- surrounding whitespace and a BOM are stripped; whitespace inside is an error;
- pages: scheme and host are lowercased (path and query keep their case), the ``#fragment`` is
  dropped, a path-less URL gets its ``/`` (``https://x.com`` -> ``https://x.com/``), a default port
  is dropped, ``www.`` is kept (it is part of the page's address);
- domains: lowercased, a leading ``www.`` and a trailing ``.`` or ``/`` are stripped;
- IDN hosts are sent in their ASCII (punycode) form (``bücher.de`` -> ``xn--bcher-kva.de``);
- a scheme-less entry with a path (``example.com/page``) is REJECTED with a hint, not guessed: the
  API would read it as neither a page nor a domain, and guessing ``http`` vs ``https`` could pay
  for the wrong page.

Main domains are counted with the Public Suffix List including its private section
(``publicsuffixlist``, which ships the list; no network at run time): ``x.com`` and ``docs.x.com``
are one main domain, ``a.co.uk`` and ``b.co.uk`` two, ``a.blogspot.com`` and ``b.blogspot.com`` two.
That partition is at least as fine as any rule the API may apply, so a chunk that passes here is
valid whichever rule the API uses.
"""

from __future__ import annotations

import ast
import csv
import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import idna
from publicsuffixlist import PublicSuffixList

from airflow_provider_dataforseo.exceptions import InvalidTargetsError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

#: Longest target accepted, in characters (after normalisation). Longer URLs are refused by
#: common HTTP stacks and would make the whole request fail.
MAX_TARGET_LENGTH = 2048

_BOM = "\ufeff"
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WHITESPACE_RE = re.compile(r"\s")  # the characters str.isspace() accepts (both use Py_UNICODE_ISSPACE)
#: A page URL already in normal form but for its host's validation: lowercase scheme, a host of
#: lowercase ASCII letters, digits, dots and hyphens (no port, no user), then a path starting with
#: ``/`` or nothing, an optional non-empty query, no fragment. It takes the fast path of
#: :func:`normalise_target`; anything else goes through ``urlsplit`` (same result, ~4x slower).
_PLAIN_NETLOC_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]*)?")
_PLAIN_PAGE_RE = re.compile(r"(https?)://([a-z0-9.-]+)(/[^#?]*)?(\?[^#]+)?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADER_NAMES = frozenset({"target", "targets", "url", "urls", "domain", "domains", "page", "pages"})
#: A piece of a line that opens a page URL: optional whitespace, then ``http://`` or ``https://``.
_URL_START_RE = re.compile(r"\s*https?://", re.IGNORECASE)
#: A CSV field that opens with a quote: only then does CSV quoting change how a line splits.
_QUOTED_FIELD_RE = re.compile(r'(?:^|,)"')
#: The line terminators ``str.splitlines`` knows (``"\r\n"`` is the only two-character one).
_LINE_ENDS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_PSL = PublicSuffixList()  # ICANN and private sections
_PSL_ICANN = PublicSuffixList(only_icann=True)


class _TargetRejected(ValueError):
    """One entry is invalid; the message is the reason."""


@lru_cache(maxsize=65536)
def _normalise_host(host: str) -> str:
    """Lowercase, IDN-encode and validate a host name; raise :class:`_TargetRejected`.

    Memoised: the targets of one site share their host (a rejected host is not memoised).
    """
    host = host.rstrip(".")
    if not host:
        raise _TargetRejected("empty host")
    if host.startswith("[") or ":" in host or _IPV4_RE.match(host):
        raise _TargetRejected("IP addresses are not supported targets: give a domain")
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise _TargetRejected(f"invalid internationalised host name ({exc})") from None
    if len(host) > 253:
        raise _TargetRejected("host name longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise _TargetRejected(f"invalid host label {label!r}")
    if len(labels) < 2:
        raise _TargetRejected("host has no public suffix: give a full domain such as example.com")
    if labels[-1].isdigit():
        raise _TargetRejected("invalid top-level domain")
    if _PSL_ICANN.privatesuffix(host) is None:
        raise _TargetRejected(f"{host!r} is a public suffix, not a domain")
    return host


def normalise_target(value: object) -> str:
    """Normalise one target to the form the API expects.

    :param value: a page URL (``http``/``https``), a domain or a subdomain.
    :return: the normalised target, e.g. ``"https://example.com/Path?q=A"`` or ``"docs.example.com"``.
    :raises ValueError: with the reason, if the entry cannot be a valid target.
    """
    if not isinstance(value, str):
        raise _TargetRejected(f"not a string but {type(value).__name__}")
    text = value.strip().lstrip(_BOM).strip()
    if not text:
        raise _TargetRejected("empty")
    if _WHITESPACE_RE.search(text):
        raise _TargetRejected("whitespace inside")
    plain = _PLAIN_PAGE_RE.fullmatch(text)
    if plain is not None:
        scheme, host, path, query = plain.groups()
        result = f"{scheme}://{_normalise_host(host)}{path or '/'}{query or ''}"
        if len(result) > MAX_TARGET_LENGTH:
            raise _TargetRejected(f"longer than {MAX_TARGET_LENGTH} characters")
        return result
    scheme_match = _SCHEME_RE.match(text)
    if scheme_match:
        return _normalise_page(text, scheme_match.group(1).lower())
    if text.startswith("//") or ":" in text.split("/", 1)[0]:
        raise _TargetRejected("not a URL with http:// or https://, nor a domain")
    return _normalise_domain(text)


def _normalise_page(text: str, scheme: str) -> str:
    if scheme not in _DEFAULT_PORTS:
        raise _TargetRejected(f"unsupported scheme {scheme!r}: use http:// or https://")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _TargetRejected(f"malformed URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        raise _TargetRejected("URL carries user credentials")
    host = _normalise_host(parts.hostname or "")
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    result = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    if len(result) > MAX_TARGET_LENGTH:
        raise _TargetRejected(f"longer than {MAX_TARGET_LENGTH} characters")
    return result


def _normalise_domain(text: str) -> str:
    host, _, path = text.partition("/")
    if path.strip("/") or "?" in text or "#" in text:
        raise _TargetRejected(
            f"a page needs its scheme: did you mean 'https://{text}'? (domains are given without a path)"
        )
    host = _normalise_host(host)
    if host.startswith("www.") and _PSL_ICANN.privatesuffix(host[4:]) is not None:
        host = host[4:]
    return host


def target_host(target: str) -> str:
    """The host of a normalised target (a page's host, or the domain itself)."""
    _, sep, rest = target.partition("://")
    if not sep:
        return target
    netloc = rest.partition("/")[0]
    if _PLAIN_NETLOC_RE.fullmatch(netloc):  # fast path: a normalised target's host[:port]
        return netloc.partition(":")[0].lower()
    return urlsplit(target).hostname or ""


@lru_cache(maxsize=65536)
def main_domain(host: str) -> str | None:
    """The main (registrable) domain of a host by the Public Suffix List, private section included.

    A host that is itself a private-section suffix (``github.io``, ``blogspot.com``: real sites and
    valid targets) is its own main domain.

    :param host: a lowercase ASCII host, e.g. ``"docs.example.co.uk"``.
    :return: e.g. ``"example.co.uk"``, ``"foo.blogspot.com"``, ``"github.io"``; ``None`` when the
        host is an ICANN public suffix such as ``co.uk``.
    """
    result: str | None = _PSL.privatesuffix(host) or _PSL_ICANN.privatesuffix(host)
    return result


def target_main_domain(target: str) -> str:
    """The main domain a normalised target counts against (its host when it has none)."""
    host = target_host(target)
    return main_domain(host) or host


def count_main_domains(targets: Iterable[str]) -> int:
    """How many distinct main domains the normalised ``targets`` span.

    One Public Suffix List look-up per distinct host, not memoised: counting 1,000,000 targets
    does not fill :func:`main_domain`'s cache (~10 MB kept for the process's life).
    """
    hosts = {target_host(target) for target in targets}
    return len({main_domain.__wrapped__(host) or host for host in hosts})


# ---------------------------------------------------------------------------------------------
# Reading the ways targets arrive
# ---------------------------------------------------------------------------------------------


def is_storage_uri(value: object) -> bool:
    """Whether ``value`` names a file in object storage (``file://``, ``s3://``, ...), not a target.

    A single string with a scheme other than ``http``/``https`` and no separators is taken as the
    URI of a text or CSV file of targets.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    match = _SCHEME_RE.match(text)
    return match is not None and match.group(1).lower() not in _DEFAULT_PORTS and "\n" not in text


def coerce_targets(value: object) -> list[object]:
    """Turn the ways a ``targets`` argument may arrive into a list of raw entries.

    Accepted: a list or tuple; a string that renders a Python/JSON list (``"['a', 'b']"``, as a
    templated list renders); newline- or comma-separated text. Entries are not validated here.

    Text is split on newlines, then each line on the commas that cannot belong to a URL
    (:func:`split_target_line`): a comma separates entries, except inside a page URL, which runs
    from its ``http://``/``https://`` up to a comma followed by (optional whitespace and) another
    ``http://``/``https://``, or up to the line's trailing commas. So
    ``"https://ex.com/?ids=a.com,b.com"`` is one entry, ``"https://a.com/x,https://b.com/y"`` and
    ``"a.com, b.com"`` two (domains never contain commas). Blank entries are dropped.

    :param value: the rendered ``targets`` argument.
    :return: the raw entries in order.
    :raises TypeError: when ``value`` is none of the accepted shapes.
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip().lstrip(_BOM)
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, (list, tuple)):
                return list(parsed)
        return [
            entry for line in re.split(r"[\r\n]+", text) for entry in split_target_line(line) if entry.strip()
        ]
    if isinstance(value, (set, frozenset)):
        raise TypeError("targets must be ordered: pass a list, not a set")
    raise TypeError(
        f"targets must be a list of strings, a text of targets or a file URI, not {type(value).__name__}"
    )


def split_target_line(line: str) -> list[str]:
    """Split one line of targets at the commas that cannot belong to a URL.

    Every comma separates, except inside a page URL: a piece starting with ``http://`` or
    ``https://`` (any case, after optional whitespace) runs up to a comma followed by whitespace
    (a URL holds none: ``"https://a.com/, b.com"`` is two targets) or by another
    ``http://``/``https://``, or up to the commas that end the line (a comma at the end of a line
    always separates). Domains never contain commas. Pieces keep their
    surrounding whitespace, and an empty piece stays (as in CSV: ``"a.com,"`` gives
    ``["a.com", ""]``).

    :param line: one line, without its line terminator.
    :return: the pieces in order, e.g. ``["https://ex.com/?ids=a.com,b.com"]`` for that line,
        ``["https://a.com/x", " https://b.com/y"]`` for ``"https://a.com/x, https://b.com/y"``,
        ``["1", "google.com"]`` for ``"1,google.com"``.
    """
    # the commas (and whitespace) that end the line: separators, never part of a URL. Scanned
    # backwards once (a regular expression here is quadratic in a long run of commas)
    start = index = len(line)
    while index:
        before = index
        while before and line[before - 1].isspace():
            before -= 1
        if not before or line[before - 1] != ",":
            break
        start = index = before - 1
    entries: list[list[str]] = []  # each entry's comma-separated parts
    in_url = False
    for piece in line[:start].split(","):
        starts_url = _URL_START_RE.match(piece) is not None
        if in_url and not starts_url and not piece[:1].isspace():
            entries[-1].append(piece)  # after a comma of the URL (", " separates: a URL has no space)
        else:
            entries.append([piece])
            in_url = starts_url
    return [",".join(parts) for parts in entries] + line[start:].split(",")[1:]


def _without_line_end(line: str) -> str:
    """``line`` without its line terminator, if it has one."""
    if line[-1:] not in _LINE_ENDS:
        return line
    return line[:-2] if line.endswith("\r\n") else line[:-1]


def _line_target(line: str) -> str:
    """The target of one line of a file without a header: its last CSV column, URL-aware."""
    if "," not in line and '"' not in line:  # the common case: the line is the target
        return line
    if _URL_START_RE.match(line) is None and _QUOTED_FIELD_RE.search(line):
        row = next(csv.reader([line]), [])  # a quoted field: CSV quoting decides
        return row[-1] if row else ""
    return split_target_line(line)[-1]


def iter_target_file(lines: Iterable[str]) -> Iterator[str]:
    """Stream the targets of a text or CSV file, line by line (see :func:`parse_target_file`).

    :param lines: the file's lines, with or without their line terminators (an open text file
        works); a UTF-8 BOM is allowed on the first.
    :return: the raw entries in file order, one per data line.
    """
    iterator = iter(lines)
    first_line = next(iterator, None)
    if first_line is None:
        return
    bare = map(_without_line_end, itertools.chain([first_line.lstrip(_BOM)], iterator))
    kept = (line for line in bare if line.strip() and not line.lstrip().startswith("#"))
    first = next(kept, None)
    if first is None:
        return
    if _URL_START_RE.match(first) is None:
        header = [cell.strip().lower() for cell in next(csv.reader([first]), [])]
        column = next((i for i, cell in enumerate(header) if cell in _HEADER_NAMES), None)
        if column is not None:
            last = column == len(header) - 1
            for row in csv.reader(kept):
                extra = len(row) - len(header)
                if extra > 0 and _URL_START_RE.match(row[column]):
                    # an unquoted URL's commas split it over more cells than the header has: the
                    # surplus cells are its own (only a URL holds commas; the other columns follow)
                    cells = row[column:] if last else row[column : column + extra + 1]
                    yield split_target_line(",".join(cells))[0]
                else:
                    yield row[column] if column < len(row) else ""
            return
    yield _line_target(first)
    for line in kept:
        yield _line_target(line)


def parse_target_file(text: str) -> list[str]:
    """Read the targets of a text or CSV file: one target per line.

    Blank lines and lines starting with ``#`` are skipped. The first remaining line is a header
    when it does not start with ``http://``/``https://`` and one of its CSV cells is ``target``,
    ``url``, ``domain`` or ``page`` (plural too, any case):

    - with a header, the file is read as CSV (quoted fields may hold commas) and that column is
      kept; a row with more cells than the header whose target cell starts a URL is an
      unquoted URL whose commas split it, and the URL is joined back (up to a comma followed by
      another ``http(s)://``);
    - without one, each line is split by :func:`split_target_line` and its last piece kept: a line
      starting with ``http://``/``https://`` (any case) is ONE target, commas included, unless a
      comma is followed by another ``http(s)://`` (then the last URL is kept, as the last column);
      any other line is CSV and its last column is kept (``rank,domain`` files; ``1,https://...``
      keeps the whole URL), with CSV quoting when a field opens with ``"``.

    :param text: the file's content (UTF-8, BOM allowed).
    :return: the raw entries in file order (not validated; a line ending in a comma gives ``""``,
        which validation then rejects).
    """
    return list(iter_target_file(text.splitlines()))


# ---------------------------------------------------------------------------------------------
# A validated target set
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSet:
    """Normalised, de-duplicated targets and the inputs each one answers.

    :ivar targets: normalised targets in first-seen order, each once.
    :ivar inputs: target -> every original input string that normalised to it, in input order,
        ONLY for the targets given in another form or more than once: any other target's one
        input is the target itself. Read it with :meth:`inputs_of` (or
        ``inputs.get(target, [target])``). 1,000,000 targets given in normal form thus hold no
        list each (~120 MB less than a list per target).
    """

    targets: list[str]
    inputs: dict[str, list[str]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.targets)

    def inputs_of(self, target: str) -> list[str]:
        """Every original input of ``target`` (one of :attr:`targets`), in input order."""
        return self.inputs.get(target) or [target]


def normalise_distinct(values: Iterable[object]) -> tuple[list[str], dict[str, list[str]], int]:
    """Normalise, validate and de-duplicate a stream of targets, keeping first-seen order.

    Memory is one string and one dict entry per distinct target (~130 bytes; the dict is freed on
    return), plus the inputs of the targets whose input is not just the target itself.

    :param values: raw entries, read once (a generator over a file's lines works).
    :return: ``(targets, extra_inputs, count)``: the distinct normalised targets in first-seen
        order; target -> every original input that normalised to it, in input order, ONLY for the
        targets given in another form or more than once (an identical input string is listed
        once); the number of entries read (duplicates included).
    :raises InvalidTargetsError: listing EVERY bad entry with its 0-based position and reason;
        also when there is no entry at all.
    """
    seen: dict[str, None] = {}
    extra: dict[str, list[str]] = {}
    errors: list[tuple[int, object, str]] = []
    position = -1
    for position, value in enumerate(values):
        try:
            target = normalise_target(value)
        except ValueError as exc:
            errors.append((position, value, str(exc)))
            continue
        text: str = value  # type: ignore[assignment]  # normalise_target accepts only str
        if target not in seen:
            seen[target] = None
            if text != target:
                extra[target] = [text]
        elif target in extra:
            if text not in extra[target]:  # an identical input string is listed once
                extra[target].append(text)
        elif text != target:  # seen once before, as the target itself
            extra[target] = [target, text]
    if errors:
        raise InvalidTargetsError(errors)
    if position < 0:
        raise InvalidTargetsError([(0, "", "no targets given")])
    # the host memo's strings sit among the targets' memory and would pin it once they are freed
    _normalise_host.cache_clear()
    return list(seen), extra, position + 1


def normalise_targets(values: Iterable[object]) -> TargetSet:
    """Normalise, validate and de-duplicate targets, keeping first-seen order.

    :param values: raw entries (see :func:`coerce_targets`).
    :return: the :class:`TargetSet` (its ``inputs`` lists only the targets given in another form
        or more than once).
    :raises InvalidTargetsError: listing EVERY bad entry with its position and reason; also when
        there are no targets at all.
    """
    targets, extra, _ = normalise_distinct(values)
    return TargetSet(targets=targets, inputs=extra)
