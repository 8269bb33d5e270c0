"""Targets: the one normal form, validation, de-duplication, and main domains.

Reading them from lists, text, files and sitemaps is :mod:`airflow_provider_dataforseo.sources`';
planning them into requests, :mod:`airflow_provider_dataforseo.chunks`'.

Pure module: no Airflow import, no network. The rules come from the endpoint's doc
(``https://docs.dataforseo.com/v3/backlinks/bulk_pages_summary/live/``, field ``targets``):

- a domain or subdomain is given WITHOUT ``https://`` and ``www.``;
- a page is given as an absolute URL with ``http://`` or ``https://``;
- one request holds at most 1000 targets from at most 100 different main domains.

Normalisation (:func:`normalise_target`): ONE form, a fixed point
(``normalise_target(normalise_target(x)) == normalise_target(x)`` for every accepted ``x``), used
wherever targets are compared: input, planning, group files, sensor and trigger, and the matching
of the API's item ``url`` (``docs/normal-form.md`` gives every rule with examples):

- invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen, bidi marks) are
  removed anywhere, then surrounding whitespace; whitespace inside is an error;
- pages (RFC 3986 s.6.2.2 and the WHATWG URL rules): scheme and host lowercased, IDN hosts in
  punycode, a default port dropped, the ``#fragment`` dropped, ``.``/``..`` segments resolved, an
  empty path written ``/`` (no other trailing slash is added or removed), percent-escapes
  uppercased, escapes of characters that mean the same plainly decoded (``%7E`` -> ``~``),
  non-ASCII percent-encoded as UTF-8 (``/café`` -> ``/caf%C3%A9``); escapes of reserved
  characters are kept (``%2F``, ``%3B``: RFC 3986 s.2.2, they may mean something else plainly);
  ``www.`` is kept (it is part of the page's address);
- domains: lowercased, IDN in punycode, a trailing ``.`` or ``/`` stripped, EVERY leading ``www.``
  label stripped at once (``www.www.x.com`` -> ``x.com``);
- refused, with a hint: a host whose ending is in no Public Suffix List rule (``targets.txt``,
  ``index.html``; real new TLDs such as ``.zip`` or ``.dev`` are in the list), a scheme-less entry
  with a path (``example.com/page``: the API would read it as neither a page nor a domain, and
  guessing ``http`` vs ``https`` could pay for the wrong page), a local file path, a broken scheme
  (``http//x.com``). Values quoted in reasons are cut to :data:`MAX_SHOWN_LENGTH` characters.

Main domains are counted with the Public Suffix List including its private section
(``publicsuffixlist``, which ships the list; no network at run time): ``x.com`` and ``docs.x.com``
are one main domain, ``a.co.uk`` and ``b.co.uk`` two, ``a.blogspot.com`` and ``b.blogspot.com`` two.
That partition is at least as fine as any rule the API may apply, so a chunk that passes here is
valid whichever rule the API uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import idna
from publicsuffixlist import PublicSuffixList

from airflow_provider_dataforseo.exceptions import InvalidTargetsError

if TYPE_CHECKING:
    from collections.abc import Iterable

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
#: ``/`` or nothing, an optional non-empty query, no fragment; path and query hold only characters
#: that :func:`_normalise_path_query` leaves as they are (the plain ones it allows, and uppercase
#: escapes of the characters it keeps escaped). With no ``/.`` (a dot segment) it takes the fast
#: path of :func:`normalise_target`; anything else goes through ``urlsplit`` and
#: :func:`_normalise_path_query` (same result, a property test checks it, ~4x slower).
_PLAIN_NETLOC_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]*)?")
#: A domain as :func:`normalise_target` would take it apart anyway: nothing but lowercase letters,
#: digits, dots and hyphens (no scheme, path, port or space), so only the host rules apply.
_PLAIN_DOMAIN_RE = re.compile(r"[a-z0-9.-]+")
#: Characters a path or query keeps as they are: RFC 3986's unreserved, sub-delims, ``: @ /`` and
#: (in a query) ``?``. Anything else is percent-encoded as UTF-8 (``"<>\^`{|}[]``, non-ASCII, a
#: ``%`` that starts no escape).
_URL_PLAIN = r"A-Za-z0-9\-._~!$&'()*+,;=:@/?"
#: Uppercase escapes of the characters that stay escaped (all but the unreserved ones).
_KEPT_ESCAPE = r"%(?:[01][0-9A-F]|2[0-9A-CF]|3[A-F]|40|5[B-E]|60|7[B-DF]|[89A-F][0-9A-F])"
_PATH_PLAIN = _URL_PLAIN.replace("?", "")
#: Written as runs of plain characters between escapes ("unrolled": ``[p]*(?:%XX[p]*)*``, which
#: cannot backtrack, as an escape starts with ``%``, no plain character): ~3x faster than
#: matching one character at a time.
_PLAIN_PAGE_RE = re.compile(
    r"(https?)://([a-z0-9.-]+)"
    rf"(/[{_PATH_PLAIN}]*(?:{_KEPT_ESCAPE}[{_PATH_PLAIN}]*)*)?"
    rf"(\?(?=.)[{_URL_PLAIN}]*(?:{_KEPT_ESCAPE}[{_URL_PLAIN}]*)*)?"
)
#: What :func:`_normalise_path_query` rewrites: an escape (any case), or a character not plain.
_REQUOTE_RE = re.compile(rf"%[0-9A-Fa-f]{{2}}|[^{_URL_PLAIN}]")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: Characters nobody sees that copy and paste bring along (zero-width space, non-joiner and joiner,
#: word joiner and invisible operators, BOM, soft hyphen, bidirectional marks and controls): removed
#: from every target, page or domain, before anything else.
_INVISIBLE_RE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: ``http`` or ``https`` followed by a broken separator (``http//``, ``https:``, ``http:/``,
#: ``http:\\``, ``http:///``): refused with the URL it was meant to be.
_BROKEN_SCHEME_RE = re.compile(r"(https?)(?:[:;]+[/\\]*|[/\\]+)(?=[^/\\])", re.IGNORECASE)
#: A local file path: absolute, relative with ``./`` or ``../``, home-relative, UNC or Windows.
_FILE_PATH_RE = re.compile(r"(?:/|\.{1,2}[/\\]|~[/\\]|\\\\|[A-Za-z]:[/\\])")
_DOMAIN_END_RE = re.compile(r"[/?#]")
_HOST_PORT_RE = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z0-9-]+:[0-9]{1,5}(?:[/?#]|$)")
_WINDOWS_PATH_RE = re.compile(r"[A-Za-z]:[/\\]")
#: Last labels that name file types rather than top-level domains (only consulted for a label
#: that is not in the Public Suffix List, so real TLDs such as ``.zip`` or ``.py`` still pass).
_FILE_EXTENSIONS = frozenset(
    {
        *("txt", "csv", "tsv", "xml", "html", "htm", "xhtml", "json", "jsonl", "ndjson", "log", "md5"),
        *("gz", "bz2", "xz", "zst", "tar", "tgz", "xlsx", "xls", "xlsm", "ods", "odt", "doc", "docx"),
        *("pdf", "php", "asp", "aspx", "jsp", "cgi", "yaml", "yml", "toml", "ini", "cfg", "conf"),
        *("parquet", "avro", "sql", "sqlite", "db", "bak", "tmp", "jpg", "jpeg", "png", "gif", "svg"),
        *("webp", "ico", "js", "mjs", "css"),
    }
)
#: Top-level domains reserved for documentation (RFC 2606 s.2): in no Public Suffix List rule, yet
#: accepted, so examples, fixtures and the emulator can use made-up sites such as ``shop.example``.
_DOCUMENTATION_TLDS = frozenset({"example"})
#: Characters of a value quoted in an error message (longer values are cut, see :func:`shorten`).
MAX_SHOWN_LENGTH = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PSL = PublicSuffixList()  # ICANN and private sections
_PSL_ICANN = PublicSuffixList(only_icann=True)


class _TargetRejected(ValueError):
    """One entry is invalid; the message is the reason."""


def shorten(value: str, limit: int = MAX_SHOWN_LENGTH) -> str:
    """``value`` cut to ``limit`` characters for an error message, saying how long it was.

    :param value: any text (a 5 MB line is shown as its first 200 characters).
    :param limit: characters kept.
    :return: ``value`` itself when short enough, else its start, ``"..."`` and its length.
    """
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value)} characters)"


def _unknown_suffix_reason(host: str) -> str:
    """Why a host whose last label is no top-level domain of the Public Suffix List is refused."""
    tld = host.rsplit(".", 1)[-1]
    if tld in _FILE_EXTENSIONS:
        return (
            f"{shorten(host)!r} looks like a file name, not a domain ('.{tld}' is no top-level domain): "
            "to read targets from a file, pass its URI as targets, e.g. 'file:///data/targets.txt'"
        )
    return (
        f"unknown top-level domain '.{shorten(tld, 63)}' (not in the Public Suffix List): check its spelling"
    )


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
            raise _TargetRejected(f"invalid internationalised host name ({shorten(str(exc))})") from None
    if len(host) > 253:
        raise _TargetRejected("host name longer than 253 characters")
    labels = host.split(".")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise _TargetRejected(f"invalid host label {shorten(label, 70)!r}")
    if len(labels) < 2:
        raise _TargetRejected("host has no public suffix: give a full domain such as example.com")
    if labels[-1].isdigit():
        raise _TargetRejected("invalid top-level domain")
    # one look-up on the way through: None for a public suffix itself and for an unknown ending
    # (one the list's '*' default rule would accept: targets.txt, index.html)
    documentation = labels[-1] in _DOCUMENTATION_TLDS
    if _PSL_ICANN.privatesuffix(host, accept_unknown=documentation) is None:
        if _PSL_ICANN.publicsuffix(host, accept_unknown=documentation) is None:
            raise _TargetRejected(_unknown_suffix_reason(host))
        raise _TargetRejected(f"{host!r} is a public suffix, not a domain")
    return host


def normalise_target(value: object) -> str:
    """Normalise one target to the one form it is sent, stored and matched in.

    The form is a fixed point: ``normalise_target(normalise_target(x)) == normalise_target(x)``
    for every accepted ``x``. Its rules are in the module doc and ``docs/normal-form.md``.

    :param value: a page URL (``http``/``https``), a domain or a subdomain.
    :return: the normalised target, e.g. ``"https://example.com/caf%C3%A9?q=A"`` or
        ``"docs.example.com"``.
    :raises ValueError: with the reason (and a hint when one helps), if the entry cannot be a valid
        target; values shown in the reason are cut to ~200 characters.
    """
    if not isinstance(value, str):
        raise _TargetRejected(f"not a string but {type(value).__name__}")
    # the usual case first: a page already in normal form but maybe for its host (no whitespace,
    # nothing invisible: the pattern allows neither, so stripping would change nothing)
    plain = _PLAIN_PAGE_RE.fullmatch(value)
    if plain is not None and "/." not in value:
        return _plain_page(value, plain)
    if _PLAIN_DOMAIN_RE.fullmatch(value):  # a domain of lowercase ASCII: only the host rules apply
        return _without_www(_normalise_host(value))
    text = (value if value.isascii() else _INVISIBLE_RE.sub("", value)).strip()
    if not text:
        raise _TargetRejected("empty")
    if _WHITESPACE_RE.search(text):
        raise _TargetRejected("whitespace inside")
    plain = _PLAIN_PAGE_RE.fullmatch(text)
    if plain is not None and "/." not in text:  # already normal but for the host
        return _plain_page(text, plain)
    broken = _BROKEN_SCHEME_RE.match(text)
    if broken is not None and text[: broken.end()].lower() != f"{broken.group(1).lower()}://":
        fixed = f"{broken.group(1).lower()}://{text[broken.end() :]}"
        raise _TargetRejected(f"malformed scheme {text[: broken.end()]!r}: did you mean {shorten(fixed)!r}?")
    scheme_match = _SCHEME_RE.match(text)
    if scheme_match:
        return _normalise_page(text, scheme_match.group(1).lower())
    if text.startswith("//"):
        raise _TargetRejected(f"a page needs its scheme: did you mean {shorten('https:' + text)!r}?")
    if _FILE_PATH_RE.match(text):
        raise _TargetRejected(_file_path_reason(text))
    if ":" in text.split("/", 1)[0]:
        if _HOST_PORT_RE.match(text):  # example.com:8080/page: a page without its scheme
            hint = shorten("https://" + text + ("" if "/" in text else "/"))
            raise _TargetRejected(f"a page needs its scheme: did you mean {hint!r}? (domains have no port)")
        raise _TargetRejected("not a URL with http:// or https://, nor a domain")
    return _normalise_domain(text)


def _plain_page(text: str, plain: re.Match[str]) -> str:
    """The normal form of ``text``, a page :data:`_PLAIN_PAGE_RE` matched: its host normalised.

    ``text`` itself when its host already is (and its path is not empty): no copy is made.
    """
    scheme, host, path, query = plain.groups()
    normal_host = _normalise_host(host)
    same = normal_host == host and path
    result = text if same else f"{scheme}://{normal_host}{path or '/'}{query or ''}"
    if len(result) > MAX_TARGET_LENGTH:
        raise _TargetRejected(f"longer than {MAX_TARGET_LENGTH} characters in normal form ({len(result):,})")
    return result


def _file_path_reason(text: str) -> str:
    """The reason for refusing a local file path given as a target."""
    uri = "file:///data/targets.txt"
    if text.startswith("/"):
        uri = PurePosixPath(text).as_uri()
    elif _WINDOWS_PATH_RE.match(text):
        uri = PureWindowsPath(text).as_uri()
    return (
        f"{shorten(text)!r} looks like a file path, not a target: to read targets from a file, "
        f"pass its URI as targets, e.g. {shorten(uri)!r}"
    )


def _normalise_page(text: str, scheme: str) -> str:
    """Normalise a page URL whose scheme is ``scheme`` (see the module doc)."""
    if scheme not in _DEFAULT_PORTS:
        raise _TargetRejected(f"unsupported scheme {shorten(scheme, 40)!r}: use http:// or https://")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _TargetRejected(f"malformed URL ({shorten(str(exc))})") from None
    if parts.username is not None or parts.password is not None:
        raise _TargetRejected("URL carries user credentials")
    if port == 0:
        raise _TargetRejected("port 0 is no port a server listens on: give the page's real port, or none")
    host = _normalise_host(parts.hostname or "")
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if _CONTROL_RE.search(parts.path) or _CONTROL_RE.search(parts.query):
        raise _TargetRejected("control character inside")
    path, query = _normalise_path_query(parts.path, parts.query)
    result = f"{scheme}://{netloc}{path}{'?' if query else ''}{query}"
    if len(result) > MAX_TARGET_LENGTH:
        raise _TargetRejected(f"longer than {MAX_TARGET_LENGTH} characters in normal form ({len(result):,})")
    return result


def _normalise_path_query(path: str, query: str) -> tuple[str, str]:
    """A URL's path and query in normal form (RFC 3986 s.6.2.2, with WHATWG's encoding of the rest).

    Percent-escapes uppercased; escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) decoded,
    and only those (an escaped reserved character such as ``%2F`` or ``%3B`` may mean something
    else than the plain one, RFC 3986 s.2.2); non-ASCII characters and the ASCII ones no URL may
    hold plainly (``" < > \\ ^ ` { | } [ ]``, DEL) percent-encoded as UTF-8; a ``%`` that starts
    no escape written ``%25``; then ``.`` and ``..`` segments removed (s.5.2.4). An empty path is
    ``/``. One pass gives the fixed point: what it writes it leaves as it is.

    :param path: the path as written (after the host), e.g. ``"/caf%c3%a9/./x"``.
    :param query: the query as written, without its ``?``.
    :return: ``(path, query)``, e.g. ``("/caf%C3%A9/x", "")``.
    :raises _TargetRejected: for a character that has no UTF-8 form (a lone surrogate).
    """
    try:
        path = _remove_dot_segments(_REQUOTE_RE.sub(_requoted, path) or "/")
        return path, _REQUOTE_RE.sub(_requoted, query)
    except UnicodeEncodeError:
        raise _TargetRejected("a character that has no UTF-8 form (a lone surrogate)") from None


def _requoted(match: re.Match[str]) -> str:
    """One escape or character of :data:`_REQUOTE_RE` in normal form."""
    token = match.group(0)
    if len(token) == 3:  # an escape
        char = chr(int(token[1:], 16))
        return char if char in _UNRESERVED else token.upper()
    return "".join(f"%{byte:02X}" for byte in token.encode("utf-8"))


def _remove_dot_segments(path: str) -> str:
    """``path`` (starting with ``/``) without ``.`` and ``..`` segments (RFC 3986 s.5.2.4)."""
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):  # /a/. and /a/b/.. name the folder: /a/
        kept.append("")
    return "/" + "/".join(kept)


def _normalise_domain(text: str) -> str:
    """Normalise a domain or subdomain (no scheme): host rules, then every leading ``www.`` off."""
    host = _DOMAIN_END_RE.split(text, maxsplit=1)[0]
    if text[len(host) :].strip("/"):
        try:
            _normalise_host(host)
        except _TargetRejected:  # ``data/targets.txt``: not a host and a path
            raise _TargetRejected(_file_path_reason(text)) from None
        raise _TargetRejected(
            f"a page needs its scheme: did you mean {shorten('https://' + text)!r}? "
            "(domains are given without a path)"
        )
    return _without_www(_normalise_host(host))


def _without_www(host: str) -> str:
    """A normalised domain without its leading ``www.`` labels, all at once (``www.www.x.com`` ->
    ``x.com``: one pass gives the fixed point), as long as what is left is a domain."""
    while host.startswith("www.") and _PSL_ICANN.privatesuffix(host[4:]) is not None:
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


def target_origin(target: str) -> str:
    """A normalised target up to its path: ``"https://docs.x.com"`` for ``"https://docs.x.com/a/b"``,
    the domain itself for a domain. Targets of one origin share a host (:func:`target_host` of the
    origin); slicing is ~5x cheaper than parsing each target, so group by origin first.

    The text before the first ``/`` after the scheme's ``//``: a host has 3 characters at least
    (``a.b``), so the search starts at position 8, past ``https://`` and inside any host of
    ``http://``.
    """
    end = target.find("/", 8)
    return target if end < 0 else target[:end]


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
    hosts = {target_host(origin) for origin in {target_origin(target) for target in targets}}
    return len({main_domain.__wrapped__(host) or host for host in hosts})


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

    :param values: raw entries (see :func:`airflow_provider_dataforseo.sources.coerce_targets`).
    :return: the :class:`TargetSet` (its ``inputs`` lists only the targets given in another form
        or more than once).
    :raises InvalidTargetsError: listing EVERY bad entry with its position and reason; also when
        there are no targets at all.
    """
    targets, extra, _ = normalise_distinct(values)
    return TargetSet(targets=targets, inputs=extra)
