"""Target sources: the strings of a ``targets`` argument, from lists, text, files and sitemaps.

Pure module: no Airflow import and no network of its own. Files are opened through the
``open_binary`` callable the caller passes (the operators pass one over ``ObjectStoragePath`` and
``requests``); turning a string into the API's form is :mod:`airflow_provider_dataforseo.targets`'
job, which this module only asks whether a cell *is* a target.

What a ``targets`` value may be (:func:`open_source`):

- a list, tuple, generator or any other iterable of strings, including a mapped task's output
  (Airflow's ``LazyXComSequence``); rows (tuples, lists, dicts) only with ``column``;
- text: one or more lines, each line read by the rules of a file line below;
- the URI of a file (``file://``, ``s3://conn@bucket/key``, any ``ObjectStoragePath`` scheme), plain
  or gzip, in any encoding;
- a sitemap (``.xml``, ``.xml.gz``) or a sitemap index, from object storage or ``http(s)://``.

Files and text (:func:`iter_target_table`): the encoding is ``encoding`` when given, else the
BOM's (UTF-8, UTF-16 LE/BE, UTF-32), else UTF-16 without a BOM (:func:`utf16_without_bom`), else
UTF-8, else Windows-1252 when the text is plausible (:func:`plausible_western`), else
charset-normalizer's guess when it is confident (:func:`detect_encoding`); the delimiter is
sniffed (tab, semicolon, comma); blank lines and lines starting with ``#`` are skipped but keep
their place in the numbering (errors give the file's own 1-based line numbers). The first line is
a header when one of its cells is a known column name (:data:`TARGET_COLUMN_NAMES`, case, spaces
and ``_`` ignored), and that column is read; ``column`` (a header name, or a 0-based index) picks
one. Without a header, a line that holds several cells is read as a table only when the columns
beside the targets are plainly not targets; a cell that looks like an attempted target
(:func:`is_attempted_target`: ``http//b.com``, ``b.com c.com``) counts as a target, so it is read
and refused naming its line, never dropped:

- when every non-empty cell of every column is a target, every cell is one (``a.com, b.com``);
- when exactly one column holds only targets and the others hold none (a rank, a click count),
  that column is read;
- otherwise (several target columns beside other data, none, or a column mixing targets with
  other values) reading fails, naming the file, the line and ``targets_column``.

A comma inside a page URL stays in it (``https://x.com/?ids=a.com,b.com`` is one target) unless
it is followed by whitespace, by another ``http(s)://``, or, in a URL without a query, by a
complete target (``https://a.com/,b.com`` is two). A file whose lines all split into the same
number of cells, one column of them numbers, is a table first (a header-less Search Console export:
``https://plumber.example.com/,2100,80``).
"""

from __future__ import annotations

import ast
import codecs
import gzip
import io
import logging
import os
import posixpath
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote, urlsplit

from airflow_provider_dataforseo.exceptions import InvalidTargetsError, NotShown
from airflow_provider_dataforseo.targets import normalise_target

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

#: Values quoted in errors are cut to this many characters.
MAX_SHOWN: Final = 200
#: Most page URLs read from one sitemap source (all files of an index together).
SITEMAP_MAX_URLS: Final = 1_000_000
#: Most sitemap files read for one source (the index itself included).
SITEMAP_MAX_FILES: Final = 1_000
#: Most bytes of one sitemap file, after gunzip (sitemaps.org: "no larger than 50MB (52,428,800
#: bytes)" uncompressed, https://www.sitemaps.org/protocol.html#index).
SITEMAP_MAX_BYTES: Final = 52_428_800

#: Known names of a target column, compared without case, spaces, ``_`` and ``-``: name -> where
#: it comes from.
TARGET_COLUMN_NAMES: Final[Mapping[str, str]] = {
    "url": "generic",
    "urls": "generic",
    "target": "generic",
    "targets": "generic",
    "domain": "generic",
    "domains": "generic",
    "page": "generic",
    "pages": "generic",
    "toppages": "Google Search Console, Performance > Pages ('Top pages')",
    "targetpage": "Google Search Console, Links > Top linked pages ('Target page')",
    "site": "Google Search Console, Links > Top linking sites ('Site')",
    "address": "Screaming Frog SEO Spider, Internal ('Address')",
    "targeturl": "Ahrefs ('Target URL'), Semrush ('Target url'), Majestic ('TargetURL')",
    "sourceurl": "Semrush ('Source url'), Majestic ('SourceURL')",
}

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WEB_SCHEMES = frozenset({"http", "https"})
#: A piece of a line that opens a page URL: optional whitespace, then ``http://`` or ``https://``.
_URL_START_RE = re.compile(r"\s*https?://", re.IGNORECASE)
#: A sitemap's file name: ``.xml`` or ``.xml.gz``.
_XML_NAME_RE = re.compile(r"\.xml(\.gz)?$", re.IGNORECASE)
#: A cell of numbers: counts, positions, percentages, thousands separators.
_NUMERIC_RE = re.compile(r"[-+]?[\d.,\s']*\d[\d.,\s']*%?")
#: A value that may be shown in an error about a file's content: a URL or a host-like string.
_PLAUSIBLE_RE = re.compile(
    r"(?:https?://[^\s\"'<>]+|[\w-]+(?:\.[\w-]+)+\.?(?::\d+)?(?:/[^\s\"'<>]*)?)", re.IGNORECASE
)
#: A URL with a scheme written wrong (``http//``, ``https:/``, ``htp://``, ``https:example.com``).
_BROKEN_URL_RE = re.compile(
    r"[a-z][a-z0-9+.-]{1,9}(?::[/\\]{0,3}|[/\\]{1,3})[\w-]+(?:\.[\w-]+)+", re.IGNORECASE
)
#: What separates the targets a line holds when they are written on one line by mistake.
_RUN_SEPARATORS_RE = re.compile(r"[\s,;]+")
_HEADER_KEY_RE = re.compile(r"[\s_\-]+")
#: A single value that is a local path (``/data/targets.txt``, ``~/x.csv``, ``./x.txt``), not a target.
_PATH_RE = re.compile(r"(?:/|~/|\./|\.\./)[^\n,]*")
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BOM = "\ufeff"
_GZIP_MAGIC = b"\x1f\x8b"
#: Bytes of a file charset-normalizer looks at when the file is not UTF-8.
_DETECT_BYTES = 1 << 20
#: Bytes of a file looked at for UTF-16 without a BOM.
_UTF16_SNIFF_BYTES = 4096
#: Lines a quoted CSV field may span before the quote is taken as a stray character.
_MAX_QUOTED_LINES = 20
_SNIFF_LINES = 50


class TargetSourceError(ValueError):
    """A ``targets`` source cannot be read as given: raised before any request is sent.

    Permanent: reading the same source again gives the same error. The message names the source,
    the line where it can, and what to set (``targets_column``, ``targets_encoding``,
    ``allowed_target_roots``).
    """


# ---------------------------------------------------------------------------------------------
# What a value is
# ---------------------------------------------------------------------------------------------


def is_storage_uri(value: object) -> bool:
    """Whether ``value`` names a file in object storage (``file://``, ``s3://``, ...), not a target.

    A single string with a scheme other than ``http``/``https`` and no line break is taken as the
    URI of a file of targets.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    match = _SCHEME_RE.match(text)
    return match is not None and match.group(1).lower() not in _WEB_SCHEMES and "\n" not in text


def is_sitemap_uri(value: object) -> bool:
    """Whether ``value`` names a sitemap: a storage URI ending in ``.xml``/``.xml.gz``, or an
    ``http(s)`` URL whose file name holds ``sitemap`` and ends in ``.xml``/``.xml.gz``.

    Any other ``http(s)`` URL is a page target, not a source.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    if not text or any(ch.isspace() for ch in text) or "," in text:
        return False
    match = _SCHEME_RE.match(text)
    if match is None:
        return False
    path = urlsplit(text).path
    if _XML_NAME_RE.search(path) is None:
        return False
    if match.group(1).lower() in _WEB_SCHEMES:
        return "sitemap" in posixpath.basename(path).lower()
    return True


def is_plausible_target(value: object) -> bool:
    """Whether ``value`` looks like a URL or a host name: only such values of a file are shown."""
    return isinstance(value, str) and _PLAUSIBLE_RE.fullmatch(value.strip()) is not None


def is_attempted_target(value: object) -> bool:
    """Whether ``value`` looks like a target someone meant to write, valid or not: a URL or a host
    (:func:`is_plausible_target`), a URL with a broken scheme (``http//b.com``, ``https:/b.com``,
    ``htp://b.com``), or several of those run together (``b.com c.com``).

    Such a value is shown in errors (cut short), and a column holding one is a column of targets,
    never ignored. Anything else (``root:x:0:0:...``, ``Title 1``, ``v1.2 release``) is plainly not
    a target.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    if is_plausible_target(text) or _BROKEN_URL_RE.match(text) is not None:
        return True
    pieces = [piece for piece in _RUN_SEPARATORS_RE.split(text) if piece]
    return len(pieces) > 1 and all(
        is_plausible_target(piece) or _BROKEN_URL_RE.match(piece) is not None for piece in pieces
    )


def is_target(value: str) -> bool:
    """Whether ``value`` is a valid target (:func:`~airflow_provider_dataforseo.targets.normalise_target`)."""
    try:
        normalise_target(value)
    except ValueError:
        return False
    return True


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def header_key(name: str) -> str:
    """A column name as compared: no case, no spaces, ``_`` or ``-`` (``"Top pages"`` -> ``"toppages"``)."""
    return _HEADER_KEY_RE.sub("", name.strip().lstrip(_BOM)).lower()


# ---------------------------------------------------------------------------------------------
# Entries that remember where they came from
# ---------------------------------------------------------------------------------------------


class TargetSource:
    """The raw entries of one ``targets`` value, read once, each remembering where it came from.

    Iterating yields the entries (strings stripped of surrounding whitespace, other values as
    given) and records each one's place, so that :meth:`relabel` can turn the stream positions of
    an :class:`~airflow_provider_dataforseo.exceptions.InvalidTargetsError` into file line numbers
    (8 bytes an entry).

    :param name: the file or sitemap URI, or ``None`` for a list or text given inline.
    :param kind: ``"list"`` (positions are 0-based list indices), ``"text"`` / ``"file"``
        (1-based line numbers), ``"sitemap"`` (files and 1-based ``<loc>`` numbers).
    :param rows: ``(place, entry)`` pairs; a sitemap's place is ``file_number << 32 | loc_number``.
    :param files: a sitemap source's file URIs, by file number.
    """

    def __init__(
        self,
        name: str | None,
        kind: str,
        rows: Iterable[tuple[int, object]],
        *,
        files: list[str] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self._rows = rows
        self._places = array("q")
        self.files = files if files is not None else []

    def __iter__(self) -> Iterator[object]:
        places = self._places
        for place, value in self._rows:
            places.append(place)
            yield value.strip() if isinstance(value, str) else value

    def where(self, index: int) -> str:
        """The place of the ``index``-th entry read: ``"#3"``, ``"line 12"``, ``"line 2, value 3"``,
        ``"entry 7 of https://x.com/sitemap-2.xml"``."""
        if index >= len(self._places):
            return f"#{index}"
        place = self._places[index]
        if self.kind == "list":
            return f"#{place}"
        if self.kind == "sitemap":
            number = place >> 32
            where = self.files[number] if number < len(self.files) else self.name
            return f"entry {place & 0xFFFFFFFF} of {where}"
        first = index
        while first and self._places[first - 1] == place:
            first -= 1
        last = index
        while last + 1 < len(self._places) and self._places[last + 1] == place:
            last += 1
        return f"line {place}" if first == last else f"line {place}, value {index - first + 1}"

    def shown(self, value: object, reason: str) -> tuple[object, str]:
        """What an error may show of a bad entry: inline values cut short; a file's values only
        when they look like an attempted target (:func:`is_attempted_target`; never other
        content), and then the reason too, with a hint for targets run together."""
        if isinstance(value, str) and reason == "whitespace inside":
            pieces = value.split()
            if len(pieces) > 1 and all(is_attempted_target(piece) for piece in pieces):
                reason += (
                    ": give each target as its own item"
                    if self.kind == "list"
                    else ": put one target per line, or separate them with commas"
                )
        if self.kind in ("list", "text"):
            return (cut(value) if isinstance(value, str) else value), reason
        if is_attempted_target(value):
            return cut(str(value)), reason
        length = len(value) if isinstance(value, str) else 0
        return NotShown(length), reason if "'" not in reason and '"' not in reason else "not a target"

    def relabel(self, error: InvalidTargetsError) -> InvalidTargetsError:
        """``error`` (positions in the stream of entries) with places, safe values and the source."""
        errors: list[tuple[int | str, object, str]] = []
        for position, value, reason in error.errors:
            if reason == "no targets given":
                what = f"{self.name} holds" if self.name else "the value holds"
                errors.append(("-", "", f"no targets given: {what} no target"))
                continue
            shown, why = self.shown(value, reason)
            errors.append((self.where(int(position)), shown, why))
        return InvalidTargetsError(errors, source=self.name)


# ---------------------------------------------------------------------------------------------
# Inline values: lists, sequences, text
# ---------------------------------------------------------------------------------------------


def coerce_targets(value: object, *, column: int | str | None = None) -> list[object]:
    """Turn the ways a ``targets`` argument may arrive into a list of raw entries.

    Accepted: any iterable of strings (list, tuple, generator, Airflow's ``LazyXComSequence``);
    a string that renders a Python/JSON list (``"['a', 'b']"``, as a templated list renders);
    text, read line by line by the rules of a file (see the module docstring). Entries are not
    validated here.

    :param value: the rendered ``targets`` argument.
    :param column: for rows (tuples, lists, dicts) or a table of text: the column to read, a
        0-based index or a name.
    :return: the raw entries in order (strings stripped).
    :raises TypeError: when ``value`` is none of the accepted shapes, or holds rows without
        ``column``.
    :raises TargetSourceError: when a text cannot be read as targets (see :func:`iter_target_table`).
    """
    return list(inline_source(value, column=column))


def inline_source(value: object, *, column: int | str | None = None) -> TargetSource:
    """The :class:`TargetSource` of a list, sequence, generator or text given inline.

    :raises TypeError: as :func:`coerce_targets`.
    """
    if isinstance(value, str):
        text = value.strip().lstrip(_BOM)
        if _PATH_RE.fullmatch(text):
            uri = "file://" + quote(os.path.abspath(os.path.expanduser(text)))
            raise TargetSourceError(
                f"targets {cut(text)!r} looks like a path, not a target: give a file as its URI, "
                f"e.g. {uri!r} (pathlib.Path.as_uri() writes one)"
            )
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                parsed = None
            if isinstance(parsed, (list, tuple)):
                return TargetSource(None, "list", _list_rows(parsed, column))
        return TargetSource(
            None, "text", iter_target_table(_text_lines(value), name="the targets text", column=column)
        )
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("targets must be text, not bytes: decode them, or pass the URI of the file")
    if isinstance(value, AbstractSet):
        raise TypeError("targets must be ordered: pass a list, not a set")
    if isinstance(value, Mapping):
        raise TypeError(
            f"targets must be a list of strings, a text of targets or a file URI, not {type(value).__name__} "
            "(rows as dicts: pass a list of them with targets_column)"
        )
    if isinstance(value, Iterable):
        return TargetSource(None, "list", _list_rows(value, column))
    raise TypeError(
        f"targets must be a list of strings, a text of targets or a file URI, not {type(value).__name__}"
    )


def _text_lines(text: str) -> Callable[[], Iterator[str]]:
    return lambda: iter(io.StringIO(text, newline=""))


def _list_rows(values: Iterable[object], column: int | str | None) -> Iterator[tuple[int, object]]:
    """``(index, entry)`` for an iterable of strings, or of rows with ``column``."""
    for index, value in enumerate(values):
        if isinstance(value, (str, type(None), int, float)) or (column is None and not _is_row(value)):
            yield index, value
        elif column is None:
            raise TypeError(
                f"targets must be strings: #{index} is a row ({type(value).__name__}: "
                f"{cut(repr(value), 80)}); pass a list of strings, or set targets_column to the row's "
                "column to read (a 0-based index, or a key of dict rows)"
            )
        else:
            yield index, _row_cell(value, column, index)


def _is_row(value: object) -> bool:
    return isinstance(value, (Mapping, list, tuple))


def _row_cell(row: object, column: int | str, index: int) -> object:
    if isinstance(row, Mapping):
        if column in row:
            return row[column]
        wanted = header_key(str(column))
        for key, cell in row.items():
            if isinstance(key, str) and header_key(key) == wanted:
                return cell
        raise TypeError(
            f"targets #{index} has no key {column!r} (targets_column); its keys: {sorted(map(str, row))}"
        )
    if isinstance(row, (list, tuple)):
        if isinstance(column, int) and -len(row) <= column < len(row):
            return row[column]
        raise TypeError(
            f"targets #{index} has {len(row)} cells, no column {column!r} (targets_column, 0-based)"
        )
    raise TypeError(f"targets #{index} is {type(row).__name__}, not a row or a string")


# ---------------------------------------------------------------------------------------------
# Lines and cells
# ---------------------------------------------------------------------------------------------


def split_target_line(line: str) -> list[str]:
    """Split one line of comma-separated targets at the commas that cannot belong to a URL.

    A comma separates entries, except inside a page URL: a piece starting with ``http://`` or
    ``https://`` (any case, after optional whitespace) takes the pieces after its commas, unless a
    piece starts with whitespace (a URL holds none: ``"https://a.com/, b.com"`` is two targets) or
    with another ``http(s)://``, or the URL has no query yet and the piece is a complete target
    (``"https://a.com/,b.com"`` is two; ``"https://x.com/?ids=a.com,b.com"`` one). The commas that
    end a line always separate. A field in double quotes is CSV-quoted and is never part of a URL
    before it. Pieces keep their surrounding whitespace; empty pieces stay.

    :param line: one line, without its line terminator.
    :return: the pieces in order, e.g. ``["https://ex.com/?ids=a.com,b.com"]`` for that line,
        ``["https://a.com/x", " https://b.com/y"]`` for ``"https://a.com/x, https://b.com/y"``,
        ``["1", "google.com"]`` for ``"1,google.com"``.
    """
    return _url_aware(_tokens(line, ","))


def _tokens(line: str, delimiter: str) -> list[tuple[str, bool]]:
    """The CSV fields of one line as ``(text, quoted)``: ``"..."`` fields unquoted (``""`` is ``"``)."""
    if '"' not in line:
        return [(piece, False) for piece in line.split(delimiter)]
    fields: list[tuple[str, bool]] = []
    start, size = 0, len(line)
    while True:
        if line.startswith('"', start):
            parts: list[str] = []
            position = start + 1
            while True:
                quote = line.find('"', position)
                if quote < 0:  # no closing quote: the rest of the line
                    parts.append(line[position:])
                    position = size
                    break
                parts.append(line[position:quote])
                if line.startswith('"', quote + 1):
                    parts.append('"')
                    position = quote + 2
                    continue
                position = quote + 1
                break
            end = line.find(delimiter, position)
            tail = line[position:] if end < 0 else line[position:end]
            fields.append(("".join(parts) + tail, True))
        else:
            end = line.find(delimiter, start)
            fields.append((line[start:] if end < 0 else line[start:end], False))
        if end < 0:
            return fields
        start = end + 1
        if start >= size:
            fields.append(("", False))
            return fields


def _url_aware(tokens: list[tuple[str, bool]], absorbed: set[int] | None = None) -> list[str]:
    """Join back the comma-separated tokens that belong to a page URL (see :func:`split_target_line`).

    :param absorbed: filled with the indices of the tokens joined to a URL before them.
    """
    end = len(tokens)
    while end and not tokens[end - 1][1] and not tokens[end - 1][0].strip():
        end -= 1  # the commas that end the line separate
    cells: list[str] = []
    open_url = False
    for index, (text, quoted) in enumerate(tokens[:end]):
        if (
            open_url
            and not quoted
            and not text[:1].isspace()
            and _URL_START_RE.match(text) is None
            and ("?" in cells[-1] or not is_target(text))
        ):
            cells[-1] = f"{cells[-1]},{text}"
            if absorbed is not None:
                absorbed.add(index)
            continue
        cells.append(text)
        open_url = not quoted and _URL_START_RE.match(text) is not None
    return cells + [text for text, _ in tokens[end:]]


def _logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """``(line number, line)``: 1-based numbers of the source's own lines, line ends removed,
    blank and ``#`` lines skipped, a quoted field spanning lines joined."""
    iterator = iter(lines)
    number = 0
    for raw in iterator:
        number += 1
        line = raw.rstrip("\r\n")
        if number == 1:
            line = line.lstrip(_BOM)
        start = number
        joined = 0
        while line.count('"') % 2 and joined < _MAX_QUOTED_LINES:
            more = next(iterator, None)
            if more is None:
                break
            number += 1
            joined += 1
            line = f"{line}\n{more.rstrip(chr(13) + chr(10))}"
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield start, line


def _sniff_delimiter(sample: Sequence[str]) -> str:
    """Tab, semicolon or comma, from the first lines of a source.

    A delimiter whose split of the first line names a known target column wins (tab, semicolon,
    then comma). Else each delimiter splits the lines (a comma URL-aware) and scores, for every
    line, the share of its non-empty cells that are clean (a target, a number or a known column
    name); the best total wins, a comma on a tie. So ``a.com, b.com`` is comma-separated,
    ``bücher.de;1,5`` semicolon-separated, and a URL holding ``;jsessionid=`` stays whole.
    """
    if not sample:
        return ","
    first = sample[0]
    for delimiter in ("\t", ";", ","):
        named = _tokens(first, delimiter)
        if len(named) > 1 and any(header_key(text) in TARGET_COLUMN_NAMES for text, _ in named):
            return delimiter
    verdicts: dict[str, bool] = {}

    def clean(cell: str) -> bool:
        verdict = verdicts.get(cell)
        if verdict is None:
            target, numeric, _ = _classify(cell)
            verdict = verdicts[cell] = target or numeric or header_key(cell) in TARGET_COLUMN_NAMES
        return verdict

    best, best_score, best_cells = ",", None, 0
    for delimiter in (",", "\t", ";"):
        if delimiter != "," and not any(delimiter in line for line in sample):
            continue
        score, count = 0.0, 0
        for line in sample:
            pieces = _tokens(line, delimiter)
            cells = _url_aware(pieces) if delimiter == "," else [text for text, _ in pieces]
            kept = [cell.strip() for cell in cells if cell.strip()]
            if kept:
                score += sum(map(clean, kept)) / len(kept)
                count += len(kept)
        if (
            best_score is None
            or score > best_score + 1e-9
            or (score > best_score - 1e-9 and count > best_cells)  # a tie: the finer split
        ):
            best, best_score, best_cells = delimiter, score, count
    return best


# ---------------------------------------------------------------------------------------------
# Tables: files and text
# ---------------------------------------------------------------------------------------------


def _classify(cell: str) -> tuple[bool, bool, str]:
    """``(is a target, is a number, why not a target)`` of one stripped, non-empty cell."""
    if _NUMERIC_RE.fullmatch(cell):
        return False, True, "a number"
    try:
        normalise_target(cell)
    except ValueError as exc:
        return False, False, str(exc)
    return True, False, ""


@dataclass
class _Column:
    """What pass one learnt about a column of a header-less source."""

    targets: int = 0
    others: int = 0
    numeric: bool = True
    first_target: int = 0
    first_other: int = 0
    other_value: str = ""
    other_reason: str = ""

    def add(self, line: int, cell: str, classify: Callable[[str], tuple[bool, bool, str]]) -> None:
        if self.targets and self.others:
            return  # mixed already: nothing more to learn
        target, numeric, reason = classify(cell)
        if target or (not numeric and is_attempted_target(cell)):
            # a bad target is still a target: its column is read and validation names the line
            self.targets += 1
            self.first_target = self.first_target or line
            self.numeric = False
            return
        self.numeric = self.numeric and numeric
        self.others += 1
        if not self.first_other:
            self.first_other, self.other_value, self.other_reason = line, cell, reason


@dataclass
class _Shape:
    """Pass one's view of a header-less source under one way of cutting lines into cells."""

    columns: list[_Column] = field(default_factory=list)
    widths: set[int] = field(default_factory=set)
    lines: int = 0

    def add(self, line: int, cells: list[str], classify: Callable[[str], tuple[bool, bool, str]]) -> None:
        self.lines += 1
        self.widths.add(len(cells))
        while len(self.columns) < len(cells):
            self.columns.append(_Column())
        for column, cell in zip(self.columns, cells, strict=False):
            cell = cell.strip()
            if cell:
                column.add(line, cell, classify)

    def table(self, absorbed: set[int]) -> bool:
        """Every line the same width >= 2, and a URL's commas would swallow a column of numbers
        only (``https://plumber.example.com/,2100,80``: a page and two counts, not one page)."""
        return (
            self.lines >= 2
            and len(self.widths) == 1
            and min(self.widths) >= 2
            and any(
                self.columns[i].numeric and self.columns[i].others and not self.columns[i].targets
                for i in absorbed
            )
        )


def iter_target_table(
    lines: Callable[[], Iterable[str]],
    *,
    name: str,
    column: int | str | None = None,
) -> Iterator[tuple[int, str]]:
    """Read the targets of a text or CSV source: ``(line number, raw entry)`` in source order.

    The rules are the module docstring's. Reads the lines twice when the source has no header and
    some line holds several cells (pass one decides the column, pass two yields).

    :param lines: returns a fresh iterator over the decoded lines each time it is called (line
        ends kept or not; an open text file with ``newline=""`` works).
    :param name: how errors name the source (its URI, or ``"the targets text"``).
    :param column: the column to read: a header name, or a 0-based index.
    :return: ``(1-based line number, entry)`` pairs; a row too short for the column gives ``""``
        (which validation rejects, naming the line).
    :raises TargetSourceError: when the column to read cannot be decided (see the module docstring).
    """
    logical = _logical_lines(lines())
    sample: list[tuple[int, str]] = []
    for item in logical:
        sample.append(item)
        if len(sample) >= _SNIFF_LINES:
            break
    if not sample:
        return
    column = _check_column(column)
    delimiter = _sniff_delimiter([line for _, line in sample])
    first_number, first = sample[0]
    header = [text.strip() for text, _ in _tokens(first, delimiter)]
    index = _header_column(header, column, name, first_number)
    if index is not None:
        rows = _read_with_header(_logical_lines(lines()), index, len(header), delimiter)
    else:
        rows = _read_without_header(lines, name=name, delimiter=delimiter, column=column)
    for number, entry in rows:
        yield number, entry.strip()


def _header_column(header: list[str], column: int | str | None, name: str, line: int) -> int | None:
    """The index of the target column when ``header`` is a header row, else ``None``."""
    keys = [header_key(cell) for cell in header]
    data = not header or _URL_START_RE.match(header[0]) is not None  # a line starting with a URL
    if isinstance(column, str):
        wanted = header_key(column)
        if not data and wanted in keys:
            return keys.index(wanted)
        names = ", ".join(repr(cut(c, 60)) for c in header if _looks_like_name(c))
        raise TargetSourceError(
            f"{name}: targets_column={column!r}, but line {line} is not a header naming it"
            f"{f' (its names: {names})' if names else ''}. Give the header's name of the target "
            "column, or its 0-based index."
        )
    if data:
        return None
    if isinstance(column, int):
        cell = header[column].strip() if column < len(header) else ""
        return column if cell and not is_target(cell) else None  # a name over the column: a header
    known = [i for i, key in enumerate(keys) if key in TARGET_COLUMN_NAMES]
    if len(known) <= 1:
        return known[0] if known else None
    specific = [i for i in known if TARGET_COLUMN_NAMES[keys[i]] != "generic"]
    candidates = specific if len(specific) == 1 else known
    if len(candidates) > 1:
        names = " or ".join(repr(header[i]) for i in candidates)
        raise TargetSourceError(
            f"{name}: the header (line {line}) names several target columns ({names}): set "
            f"targets_column to the one to read, e.g. targets_column={header[candidates[-1]]!r}"
        )
    return candidates[0]


def _looks_like_name(cell: str) -> bool:
    return len(cell) <= 40 and re.fullmatch(r"[\w .()%-]*", cell) is not None


def _read_with_header(
    logical: Iterator[tuple[int, str]], index: int, width: int, delimiter: str
) -> Iterator[tuple[int, str]]:
    next(logical, None)  # the header
    last = index == width - 1
    for number, line in logical:
        tokens = _tokens(line, delimiter)
        extra = len(tokens) - width
        if (
            delimiter == ","
            and extra > 0
            and index < len(tokens)
            and not tokens[index][1]
            and _URL_START_RE.match(tokens[index][0])
        ):
            # an unquoted URL's commas split it over more cells than the header has: the
            # surplus cells are its own (only a URL holds commas; the other columns follow)
            cells = tokens[index:] if last else tokens[index : index + extra + 1]
            yield number, split_target_line(",".join(text for text, _ in cells))[0]
            continue
        yield number, tokens[index][0] if index < len(tokens) else ""


def _read_without_header(
    lines: Callable[[], Iterable[str]], *, name: str, delimiter: str, column: int | str | None
) -> Iterator[tuple[int, str]]:
    if column is None and not any(delimiter in line or '"' in line for _, line in _logical_lines(lines())):
        for number, line in _logical_lines(lines()):  # one cell a line: the common list
            yield number, line
        return
    plain, joined = _Shape(), _Shape()
    absorbed: set[int] = set()  # plain columns a URL's commas took in
    for number, line in _logical_lines(lines()):
        tokens = _tokens(line, delimiter)
        cells = [text for text, _ in tokens]
        verdicts: dict[str, tuple[bool, bool, str]] = {}

        def classify(
            cell: str, verdicts: dict[str, tuple[bool, bool, str]] = verdicts
        ) -> tuple[bool, bool, str]:
            verdict = verdicts.get(cell)
            if verdict is None:
                verdict = verdicts[cell] = _classify(cell)
            return verdict

        plain.add(number, cells, classify)
        if delimiter == ",":
            joined.add(number, _url_aware(tokens, absorbed), classify)
    table = delimiter != "," or plain.table(absorbed)
    shape = plain if table else joined

    def cells_of(line: str) -> list[str]:
        tokens = _tokens(line, delimiter)
        return [text for text, _ in tokens] if table else _url_aware(tokens)

    if column is not None:
        index = int(column)
        for number, line in _logical_lines(lines()):
            cells = cells_of(line)
            yield number, cells[index] if index < len(cells) else ""
        return
    if max(shape.widths, default=0) <= 1:
        for number, line in _logical_lines(lines()):
            cells = cells_of(line)
            yield number, cells[0] if cells else ""
        return
    decided = _decide_column(shape, name)
    if decided is None:  # every cell a target: a list of them
        for number, line in _logical_lines(lines()):
            for cell in cells_of(line):
                if cell.strip():
                    yield number, cell
        return
    ignored = [i for i in range(len(shape.columns)) if i != decided]
    log.warning(
        "%s has no header: reading column %d (targets; 0-based) and ignoring column(s) %s, which hold "
        "no target (e.g. line %d); set targets_column or add a header row to choose otherwise",
        name,
        decided,
        ", ".join(map(str, ignored)),
        min((shape.columns[i].first_other for i in ignored if shape.columns[i].first_other), default=0),
    )
    for number, line in _logical_lines(lines()):
        cells = cells_of(line)
        yield number, cells[decided] if decided < len(cells) else ""


_SET_COLUMN = (
    "set targets_column to the column to read (a 0-based index), or add a header row naming it "
    "(url, target, domain, ...)"
)


def _decide_column(shape: _Shape, name: str) -> int | None:
    """The one target column of a header-less table; ``None`` when no column is pure data (then
    every cell is read as a target and validation names any bad one with its line)."""
    columns = shape.columns
    data = [i for i, c in enumerate(columns) if c.others and not c.targets]
    if not data:
        return None
    mixed = [i for i, c in enumerate(columns) if c.others and c.targets]
    pure = [i for i, c in enumerate(columns) if c.targets and not c.others]
    if mixed:
        i = mixed[0]
        c = columns[i]
        shown = f" ({cut(c.other_value, 80)!r})" if is_plausible_target(c.other_value) else ""
        raise TargetSourceError(
            f"{name}: no header row, and column {i} (0-based) holds targets (line {c.first_target}) and "
            f"values that are not (line {c.first_other}{shown}: {_safe_reason(c)}) beside a column "
            f"of other data (column {data[0]}): fix that line, or {_SET_COLUMN}"
        )
    if len(pure) == 1:
        return pure[0]
    if pure:
        raise TargetSourceError(
            f"{name}: no header row, and columns {', '.join(map(str, pure))} (0-based) all hold "
            f"targets beside a column that does not (column {data[0]}, e.g. line "
            f"{columns[data[0]].first_other}): {_SET_COLUMN}"
        )
    c = columns[data[0]]
    raise TargetSourceError(
        f"{name}: no header row, and no column holds targets (line {c.first_other}, column {data[0]}: "
        f"{_safe_reason(c)}): {_SET_COLUMN}"
    )


def _safe_reason(column: _Column) -> str:
    reason = column.other_reason
    if is_plausible_target(column.other_value) or ("'" not in reason and '"' not in reason):
        return reason
    return "not a URL with http(s):// nor a host name"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def read_target_lines(lines: Iterable[str], *, column: int | str | None = None) -> Iterator[str]:
    """The raw entries of a text or CSV file given as its decoded lines (see :func:`iter_target_table`).

    :param lines: the file's lines, with or without their line ends (read into a list: the rules
        may need two passes); a BOM is allowed on the first.
    :param column: the column to read (a header name or a 0-based index).
    :return: the raw entries in file order.
    """
    kept = list(lines)
    return (
        entry for _, entry in iter_target_table(lambda: iter(kept), name="the targets file", column=column)
    )


#: The old name of :func:`read_target_lines`.
iter_target_file = read_target_lines


def parse_target_file(text: str, *, column: int | str | None = None) -> list[str]:
    """Read the targets of a text or CSV file's content (see :func:`iter_target_table`).

    :param text: the file's content (BOM allowed).
    :param column: the column to read (a header name or a 0-based index).
    :return: the raw entries in file order (not validated).
    """
    return [
        entry for _, entry in iter_target_table(_text_lines(text), name="the targets file", column=column)
    ]


def _buffered(stream: IO[bytes]) -> io.BufferedReader:
    return stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream)  # type: ignore[arg-type]


def open_decompressed(open_binary: Callable[[str], IO[bytes]], uri: str) -> io.BufferedReader:
    """``uri`` opened for reading bytes, gunzipped when it starts with gzip's magic number."""
    stream = _buffered(open_binary(uri))
    if stream.peek(2)[:2] == _GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"))  # type: ignore[arg-type]
    return stream


def _bom_encoding(head: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None


def utf16_without_bom(head: bytes) -> str | None:
    """``"utf-16-le"`` / ``"utf-16-be"`` when ``head`` (a file's first bytes, no BOM) is UTF-16 of
    mostly ASCII text: a NUL byte at (nearly) every odd position and (nearly) no even one is
    little-endian, the reverse big-endian; else ``None``."""
    pairs = len(head) // 2
    if pairs < 2 or b"\x00" not in head:
        return None
    even = head[0 : pairs * 2 : 2].count(0)
    odd = head[1 : pairs * 2 : 2].count(0)
    for zeros, others, encoding in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros >= 0.6 * pairs and others <= 0.1 * pairs:
            try:
                codecs.getincrementaldecoder(encoding)().decode(head[: pairs * 2], final=False)
            except UnicodeDecodeError:
                return None
            return encoding
    return None


#: Characters beyond ASCII that Western text holds besides letters (Windows-1252's punctuation).
_WESTERN_MARKS: Final = frozenset("\u00a0\u20ac\u2018\u2019\u201c\u201d\u2013\u2014\u2022\u2026«»°·©®™§£¥¢¡¿")
#: Controls a text file may hold: tab, line feed, form feed, carriage return.
_TEXT_CONTROLS: Final = frozenset("\t\n\x0c\r")


def plausible_western(text: str) -> bool:
    """Whether ``text`` (bytes decoded as Windows-1252) reads as Western European text.

    Implausible: a control character other than tab and line ends (C0, DEL; the C1 bytes
    0x81 0x8D 0x8F 0x90 0x9D are undefined in Windows-1252 and fail to decode before this), a
    character beyond ASCII that is neither a letter nor common punctuation (``³``, ``ƒ``, ``‰``:
    what Central European or Cyrillic bytes become), three letters beyond ASCII in a row (a
    Cyrillic word: ``ïðèâåò``), or more than 40 % of the letters beyond ASCII.
    """
    import unicodedata

    letters = foreign = run = 0
    for char in text:
        if char < "\x80":
            run = 0
            if (char < " " and char not in _TEXT_CONTROLS) or char == "\x7f":
                return False
            letters += char.isalpha()
            continue
        if unicodedata.category(char).startswith("L"):
            letters += 1
            foreign += 1
            run += 1
            if run >= 3:
                return False
        elif char in _WESTERN_MARKS:
            run = 0
        else:
            return False
    return foreign <= 0.4 * letters


#: A guess of charset-normalizer is used only at or below this "chaos" (share of odd characters),
#: and when its language coherence is at least _SURE_COHERENCE or no other guess comes within
#: _RIVAL_CHAOS of its chaos.
_CONFIDENT_CHAOS: Final = 0.1
_SURE_COHERENCE: Final = 0.2
_RIVAL_CHAOS: Final = 0.05


def detect_encoding(open_binary: Callable[[str], IO[bytes]], uri: str) -> tuple[str, str]:
    """The encoding of a file without a BOM that is neither UTF-16 nor UTF-8, and how it was chosen.

    Windows-1252 (what Excel writes for "CSV" in Western locales) whenever it decodes the first
    MiB and the text is plausible (:func:`plausible_western`): on a few bytes no detector can tell
    it from its neighbours (``https://example.com/\xe8`` reads as cp1006, ``a\xe7\xe3o`` as big5).
    Otherwise charset-normalizer's guess, when it is confident: chaos <= 0.1, and a language
    coherence >= 0.2 or no rival guess within 0.05 of its chaos.

    :return: ``(encoding, how it was chosen)``, for the warning.
    :raises TargetSourceError: when neither fits, asking for ``targets_encoding``.
    """
    import charset_normalizer

    with open_decompressed(open_binary, uri) as stream:
        sample = stream.read(_DETECT_BYTES)
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:
        text = ""
    if text and plausible_western(text):
        return "cp1252", "Windows-1252: it decodes the bytes as Western European text"
    matches = sorted(charset_normalizer.from_bytes(sample), key=lambda m: (m.chaos, -m.coherence))
    best = matches[0] if matches else None
    rivals = [m for m in matches[1:] if m.chaos <= (best.chaos if best else 0) + _RIVAL_CHAOS]
    if best is None or best.chaos > _CONFIDENT_CHAOS or (best.coherence < _SURE_COHERENCE and rivals):
        candidates = ", ".join(dict.fromkeys(str(m.encoding) for m in matches[:4]))
        raise TargetSourceError(
            f"{uri}: the file is not UTF-8 nor Windows-1252 text, and its encoding cannot be told "
            f"for sure{f' (it could be {candidates})' if candidates else ''}: set targets_encoding "
            "to the file's encoding (e.g. 'cp1250', 'cp1251', 'shift_jis', 'utf-16')"
        )
    foreign = sum(byte >= 0x80 for byte in sample)
    how = f"guessed by charset-normalizer from {foreign} non-ASCII byte{'' if foreign == 1 else 's'}"
    return str(best.encoding), how + (", few to be sure of" if foreign < 20 else "")


def _decoded_lines(
    open_binary: Callable[[str], IO[bytes]], uri: str, encoding: str
) -> Callable[[], Iterator[str]]:
    """A factory of fresh iterators over the decoded lines of ``uri`` (errors name the line)."""

    def lines() -> Iterator[str]:
        with open_decompressed(open_binary, uri) as stream:
            chosen = encoding  # a BOM read as U+FEFF is dropped from the first line
            text = io.TextIOWrapper(stream, encoding=chosen, errors="strict", newline="")
            number = 0
            try:
                for line in text:
                    number += 1
                    if "\x00" in line:
                        raise TargetSourceError(
                            f"{uri}: line {number} holds NUL characters when read as {chosen}: the file "
                            "is in another encoding (UTF-16 or UTF-32 without a BOM?) or not text: set "
                            "targets_encoding to the file's encoding (e.g. 'utf-16-le', 'utf-16-be')"
                        )
                    yield line
            except UnicodeDecodeError as exc:
                bad = _bad_line(open_binary, uri, chosen) or number + 1
                raise _DecodeError(uri, chosen, bad, exc) from None

    return lines


def _bad_line(open_binary: Callable[[str], IO[bytes]], uri: str, encoding: str) -> int | None:
    """The 1-based number of the first line that ``encoding`` cannot decode (for encodings where a
    line ends in the byte ``\\n``; ``None`` for UTF-16/32)."""
    if "16" in encoding or "32" in encoding:
        return None
    with open_decompressed(open_binary, uri) as stream:
        for number, raw in enumerate(stream, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return None


class _DecodeError(TargetSourceError):
    def __init__(self, uri: str, encoding: str, line: int, exc: UnicodeDecodeError) -> None:
        self.encoding = encoding
        super().__init__(
            f"{uri}: line {line} cannot be read as {encoding} ({exc.reason}, byte "
            f"0x{exc.object[exc.start]:02x}): set targets_encoding to the file's encoding "
            "(e.g. 'cp1252', 'utf-16', 'latin-1')"
        )


def iter_file_entries(
    open_binary: Callable[[str], IO[bytes]],
    uri: str,
    *,
    encoding: str | None = None,
    column: int | str | None = None,
) -> Iterator[tuple[int, str]]:
    """``(line number, entry)`` of a text/CSV file, plain or gzip, in any encoding.

    The encoding is ``encoding`` when given, else the BOM's, else UTF-8, else charset-normalizer's
    guess (logged as a warning naming the file).

    :param open_binary: opens ``uri`` for reading bytes.
    :param uri: the file's URI (named in errors).
    :param encoding: the file's encoding (``targets_encoding``), any name Python knows.
    :param column: the column to read (``targets_column``): a header name or a 0-based index.
    :raises TargetSourceError: unreadable bytes (naming the line), an unknown encoding, or an
        undecidable column.
    """
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise TargetSourceError(
                f"targets_encoding={encoding!r} is not an encoding Python knows"
            ) from None
        yield from iter_target_table(_decoded_lines(open_binary, uri, encoding), name=uri, column=column)
        return
    with open_decompressed(open_binary, uri) as stream:
        head = stream.peek(_UTF16_SNIFF_BYTES)[:_UTF16_SNIFF_BYTES]
        chosen = _bom_encoding(head[:4]) or utf16_without_bom(head)
        if chosen is None and _is_utf8(stream):
            chosen = "utf-8"
    if chosen is None:
        chosen, how = detect_encoding(open_binary, uri)
        log.warning(
            "%s is not UTF-8: read as %s (%s); if that is wrong, set targets_encoding to the file's "
            "encoding (e.g. 'cp1250', 'cp1251', 'latin-1')",
            uri,
            chosen,
            how,
        )
    elif chosen.startswith("utf-16-") and not _bom_encoding(head[:4]):
        log.warning(
            "%s has no BOM but NUL bytes at every other position: read as %s; if that is wrong, set "
            "targets_encoding",
            uri,
            chosen,
        )
    yield from iter_target_table(_decoded_lines(open_binary, uri, chosen), name=uri, column=column)


def _is_utf8(stream: IO[bytes]) -> bool:
    """Whether the rest of ``stream`` is valid UTF-8 (read in 1 MiB pieces)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while piece := stream.read(1 << 20):
            decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Sitemaps
# ---------------------------------------------------------------------------------------------


def _read_limited(stream: IO[bytes], limit: int, uri: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise TargetSourceError(
            f"{uri}: a sitemap file is larger than {limit} bytes (unpacked), the protocol's limit"
        )
    return data


def _local_name(tag: object) -> str:
    return str(tag).rpartition("}")[2]


def iter_sitemap_entries(
    open_binary: Callable[[str], IO[bytes]],
    uri: str,
    *,
    check_uri: Callable[[str], None],
    files: list[str],
    max_urls: int = SITEMAP_MAX_URLS,
    max_files: int = SITEMAP_MAX_FILES,
) -> Iterator[tuple[int, str]]:
    """The page URLs of a sitemap or sitemap index, following the index to its sitemaps.

    Parsed with ``defusedxml`` (a DTD is refused, so no entity is ever expanded); ``.xml.gz``
    (or any gzip content) is unpacked, up to :data:`SITEMAP_MAX_BYTES` a file.

    :param open_binary: opens a URI (storage or ``http(s)``) for reading bytes.
    :param uri: the sitemap or index.
    :param check_uri: raises when a sitemap named by an index may not be read (allowed roots).
    :param files: filled with the URIs read, in order (``place >> 32`` indexes it).
    :param max_urls: most ``<url>`` entries over all files; one more fails.
    :param max_files: most files read (index included); one more fails.
    :return: ``(file_number << 32 | loc_number, url)`` pairs in document order.
    :raises TargetSourceError: not a sitemap, unsafe or malformed XML, or past a limit.
    """
    import defusedxml.ElementTree as safe_tree
    from defusedxml import DefusedXmlException

    queue: list[tuple[str, str | None, int]] = [(uri, None, 0)]  # (sitemap, its index, entry)
    seen = {uri}
    urls = 0
    while queue:
        current, parent, entry = queue.pop(0)
        if len(files) >= max_files:
            raise TargetSourceError(
                f"{uri}: the sitemap index names more than {max_files} sitemap files (limit "
                "sitemap_max_files): split it, or raise the limit"
            )
        files.append(current)
        number = len(files) - 1
        try:
            with open_decompressed(open_binary, current) as stream:
                data = _read_limited(stream, SITEMAP_MAX_BYTES, current)
        except (TargetSourceError, OSError) as exc:
            if parent is None:
                raise
            named = f"{exc} (named by entry {entry} of the sitemap index {parent})"
            if isinstance(exc, TargetSourceError):
                raise TargetSourceError(named) from None
            raise type(exc)(named) from exc
        try:
            root = safe_tree.fromstring(data, forbid_dtd=True)
        except DefusedXmlException as exc:
            raise TargetSourceError(
                f"{current}: refused unsafe XML ({type(exc).__name__}): a sitemap has no DTD or entities"
            ) from None
        except safe_tree.ParseError as exc:
            raise TargetSourceError(f"{current}: not well-formed XML ({exc})") from None
        kind = _local_name(root.tag)
        if kind not in ("urlset", "sitemapindex"):
            raise TargetSourceError(
                f"{current}: not a sitemap (the root element is <{cut(kind, 40)}>, "
                "not <urlset> or <sitemapindex>)"
            )
        wanted = "url" if kind == "urlset" else "sitemap"
        position = 0
        for element in root:
            if _local_name(element.tag) != wanted:
                continue
            loc = next((child for child in element if _local_name(child.tag) == "loc"), None)
            text = (loc.text or "").strip() if loc is not None else ""
            position += 1
            if kind == "sitemapindex":
                if text and text not in seen:
                    check_uri(text)
                    seen.add(text)
                    queue.append((text, current, position))
                continue
            urls += 1
            if urls > max_urls:
                raise TargetSourceError(
                    f"{uri}: more than {max_urls} URLs in the sitemap(s) (limit sitemap_max_urls): "
                    "split the source, or raise the limit"
                )
            yield number << 32 | position, text


# ---------------------------------------------------------------------------------------------
# Allowed roots
# ---------------------------------------------------------------------------------------------


def parse_roots(value: object) -> list[str] | None:
    """Allowed roots from an argument or a config value: a list, or text separated by commas or
    newlines; ``None`` or empty -> ``None`` (no roots set)."""
    if value is None:
        return None
    items = re.split(r"[,\n]", value) if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    roots = [str(item).strip() for item in items if str(item).strip()]
    return roots or None


def local_path(uri: str) -> str | None:
    """The local path of a ``file://`` URI, percent-escapes decoded (``Path.as_uri()`` writes a
    space as ``%20``); ``None`` for other schemes."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return None
    return unquote(parts.path)


def is_under_root(uri: str, root: str) -> bool:
    """Whether ``uri`` lies under ``root`` (same scheme and bucket/host, path inside the root's).

    Local paths are compared after resolving ``..`` and symbolic links; other URIs must hold no
    ``..`` segment.
    """
    local, local_root = local_path(uri), local_path(root)
    if local is not None or local_root is not None:
        if local is None or local_root is None:
            return False
        path, base = os.path.realpath(local), os.path.realpath(local_root)
        try:
            return os.path.commonpath([path, base]) == base
        except ValueError:
            return False
    a, b = urlsplit(uri), urlsplit(root)
    if a.scheme.lower() != b.scheme.lower():
        return False
    web = a.scheme.lower() in _WEB_SCHEMES
    if (a.netloc.lower() if web else a.netloc) != (b.netloc.lower() if web else b.netloc):
        return False
    path = unquote(a.path)
    if ".." in path.split("/"):
        return False
    base = unquote(b.path).rstrip("/")
    return path == base or path.startswith(base + "/")


def check_allowed(uri: str, roots: Sequence[str] | None, *, trusted: bool) -> None:
    """Refuse ``uri`` unless it lies under one of ``roots``.

    :param uri: a file, sitemap or http(s) URL about to be read.
    :param roots: the allowed roots (``allowed_target_roots`` or ``[dataforseo]
        allowed_target_roots``); ``None`` when none is set.
    :param trusted: the value was written in the DAG file (not rendered from a template, params or
        XCom): with no roots set, such a file may be read.
    :raises TargetSourceError: naming the URI and the roots, before the file is opened.
    """
    if roots is None:
        if trusted:
            return
        raise TargetSourceError(
            f"targets names {cut(uri)}, but no allowed_target_roots is set: a file named by a run's "
            "params, a template or an upstream task is read only under roots the DAG author allows. "
            "Set allowed_target_roots=[...] on the operator, or [dataforseo] allowed_target_roots."
        )
    if not any(is_under_root(uri, root) for root in roots):
        raise TargetSourceError(
            f"targets names {cut(uri)}, which is outside the allowed roots ({', '.join(roots)}): "
            "nothing was read. Move the file under one of them, or add its folder to allowed_target_roots."
        )


def _child_check(roots: Sequence[str] | None, trusted: bool, parent: str) -> Callable[[str], None]:
    """The check of a sitemap named by an index: under the roots, or (no roots, trusted) the
    index's own scheme and host/bucket."""
    if roots is not None or not trusted:
        return lambda uri: check_allowed(uri, roots, trusted=False)
    origin = urlsplit(parent)

    def same_origin(uri: str) -> None:
        parts = urlsplit(uri)
        if (parts.scheme.lower(), parts.netloc.lower()) != (origin.scheme.lower(), origin.netloc.lower()):
            raise TargetSourceError(
                f"{parent}: the index names {cut(uri)}, on another host or bucket: set "
                "allowed_target_roots to read sitemaps from there"
            )

    return same_origin


# ---------------------------------------------------------------------------------------------
# One entry point
# ---------------------------------------------------------------------------------------------


def open_source(
    value: object,
    *,
    open_binary: Callable[[str], IO[bytes]] | None = None,
    column: int | str | None = None,
    encoding: str | None = None,
    roots: Sequence[str] | None = None,
    trusted: bool = True,
    sitemap_max_urls: int = SITEMAP_MAX_URLS,
    sitemap_max_files: int = SITEMAP_MAX_FILES,
) -> TargetSource:
    """The entries of any ``targets`` value, with their places (read lazily, once).

    :param value: a list/sequence/generator of strings, text, a file URI or a sitemap (see the
        module docstring).
    :param open_binary: opens a URI for reading bytes; required for files and sitemaps. It should
        raise :class:`TargetSourceError` for a missing file or a folder.
    :param column: ``targets_column``: a header name or a 0-based index (for rows: an index or a
        dict key).
    :param encoding: ``targets_encoding``; by default detected (see :func:`iter_file_entries`).
    :param roots: the allowed roots of files and sitemaps (see :func:`check_allowed`).
    :param trusted: whether the value was written in the DAG file (see :func:`check_allowed`).
    :param sitemap_max_urls: most URLs read from a sitemap source.
    :param sitemap_max_files: most sitemap files read for one source.
    :return: the :class:`TargetSource`; iterate it once.
    :raises TargetSourceError: a file outside the roots (before it is opened), or unreadable.
    :raises TypeError: a value of an unsupported shape.
    """
    column = _check_column(column)
    if is_sitemap_uri(value) or is_storage_uri(value):
        uri = str(value).strip()
        check_allowed(uri, roots, trusted=trusted)
        if open_binary is None:
            raise TargetSourceError(f"{cut(uri)} cannot be opened here: no opener was given")
        if is_sitemap_uri(uri):
            files: list[str] = []
            rows = iter_sitemap_entries(
                open_binary,
                uri,
                check_uri=_child_check(roots, trusted, uri),
                files=files,
                max_urls=sitemap_max_urls,
                max_files=sitemap_max_files,
            )
            return TargetSource(uri, "sitemap", rows, files=files)
        return TargetSource(
            uri, "file", iter_file_entries(open_binary, uri, encoding=encoding, column=column)
        )
    return inline_source(value, column=column)


def _check_column(column: object) -> int | str | None:
    """``targets_column`` as given or rendered: ``None``, a 0-based index, or a name."""
    if column is None or (isinstance(column, str) and not column.strip()):
        return None
    if isinstance(column, bool) or not isinstance(column, (int, str)):
        raise TypeError(f"targets_column must be a column name or a 0-based index, got {column!r}")
    if isinstance(column, str) and column.strip().isdigit():
        return int(column.strip())
    if isinstance(column, int) and column < 0:
        raise TypeError(f"targets_column must be a 0-based index >= 0 or a name, got {column!r}")
    return column.strip() if isinstance(column, str) else column


def describe(value: Any) -> str:
    """A short description of a ``targets`` value for logs (a URI, or a count)."""
    if isinstance(value, str) and (is_storage_uri(value) or is_sitemap_uri(value)):
        return value.strip()
    return type(value).__name__
