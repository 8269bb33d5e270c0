"""Airflow side of reading targets: open files, sitemaps and URLs; allowed roots from the config.

The rules of reading are :mod:`airflow_provider_dataforseo.sources` (pure); this module gives
them an opener (``ObjectStoragePath``, local files, ``requests`` for ``http(s)`` sitemaps) and
the ``[dataforseo] allowed_target_roots`` option, and turns the entries into normalised targets.
"""

from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_dataforseo import __version__
from airflow_provider_dataforseo.exceptions import InvalidTargetsError
from airflow_provider_dataforseo.planning import NormalisedTargets, normalise_stream
from airflow_provider_dataforseo.sources import (
    SITEMAP_MAX_FILES,
    SITEMAP_MAX_URLS,
    TargetSourceError,
    cut,
    local_path,
    open_source,
    parse_roots,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_dataforseo.targets import TargetSet

#: Seconds to connect to, and between bytes from, a server holding a sitemap.
HTTP_TIMEOUT = (10.0, 60.0)


class TargetSourceUnavailableError(OSError):
    """A sitemap server answered with a server error (5xx): worth a retry of the task."""


def open_target_uri(uri: str) -> IO[bytes]:
    """Open a targets file or sitemap for reading bytes.

    ``file://`` URIs are local paths with percent-escapes decoded (``Path.as_uri()`` writes a
    space as ``%20``); ``http(s)://`` URLs are fetched with ``requests``; any other scheme goes
    through Airflow's ``ObjectStoragePath`` (``s3://conn_id@bucket/key`` ...).

    :param uri: the URI.
    :return: a binary stream; the caller closes it.
    :raises TargetSourceError: the URI names a folder or nothing, or the server answers 4xx
        (permanent: fails the task at once).
    :raises TargetSourceUnavailableError: the server answers 5xx (retried by Airflow).
    """
    scheme = uri.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return _open_http(uri)
    path = local_path(uri)
    if path is not None:
        raw = uri.partition("://")[2]
        raw = raw[raw.index("/") :] if "/" in raw else raw
        if not os.path.exists(path) and os.path.exists(raw):
            path = raw  # a file whose name really holds "%20"
        if os.path.isdir(path):
            raise TargetSourceError(f"targets names {cut(uri)}, a folder: give the URI of a file")
        if not os.path.exists(path):
            raise TargetSourceError(f"targets names {cut(uri)}, which does not exist")
        return open(path, "rb")  # the caller closes it
    from airflow.sdk import ObjectStoragePath

    storage = ObjectStoragePath(uri)
    if storage.is_dir():
        raise TargetSourceError(f"targets names {cut(uri)}, a folder: give the URI of a file")
    if not storage.exists():
        raise TargetSourceError(f"targets names {cut(uri)}, which does not exist")
    stream: IO[bytes] = storage.open("rb")  # type: ignore[no-untyped-call]
    return stream


def _open_http(url: str) -> IO[bytes]:
    import requests

    response = requests.get(
        url,
        stream=True,
        timeout=HTTP_TIMEOUT,
        headers={"User-Agent": f"airflow-provider-dataforseo/{__version__}"},
    )
    if response.status_code >= 500:
        response.close()
        raise TargetSourceUnavailableError(f"{cut(url)} answered HTTP {response.status_code}")
    if response.status_code >= 400:
        response.close()
        raise TargetSourceError(f"{cut(url)} answered HTTP {response.status_code}: check the sitemap's URL")
    response.raw.decode_content = True  # a Content-Encoding is undone; a .gz file stays gzip
    response.raw.auto_close = False  # io.BufferedReader reads once more after the end
    raw: IO[bytes] = response.raw  # type: ignore[assignment]  # urllib3's HTTPResponse is a binary stream
    return raw


def configured_roots() -> list[str] | None:
    """``[dataforseo] allowed_target_roots`` (URIs separated by commas or newlines), or ``None``."""
    from airflow.sdk import conf

    return parse_roots(conf.get("dataforseo", "allowed_target_roots", fallback=None))


def read_targets_streaming(
    value: object,
    *,
    column: int | str | None = None,
    encoding: str | None = None,
    allowed_roots: Sequence[str] | str | None = None,
    trusted: bool = True,
    sitemap_max_urls: int = SITEMAP_MAX_URLS,
    sitemap_max_files: int = SITEMAP_MAX_FILES,
) -> NormalisedTargets:
    """Read and normalise targets from any source, streaming a file (up to millions of targets).

    :param value: a list/sequence/generator of strings (a mapped task's ``LazyXComSequence``
        too), text, the URI of a text/CSV file (plain or gzip, any encoding) or of a sitemap (see
        :mod:`airflow_provider_dataforseo.sources`).
    :param column: ``targets_column``: a header name or a 0-based index.
    :param encoding: ``targets_encoding``; detected by default.
    :param allowed_roots: roots (URIs) files and sitemaps must lie under, besides those of
        ``[dataforseo] allowed_target_roots`` (the DAG author's and the deployment's together).
    :param trusted: the value was written in the DAG file (with no roots set, only then is a file
        read).
    :param sitemap_max_urls: most URLs read from a sitemap source.
    :param sitemap_max_files: most sitemap files read for one source.
    :return: the distinct normalised targets and the original inputs that differ from them.
    :raises InvalidTargetsError: listing every bad entry with its line (files) or position (lists).
    :raises TargetSourceError: a file outside the roots, missing, a folder, or unreadable.
    :raises TypeError: for a value of an unsupported type.
    """
    roots = _union(parse_roots(allowed_roots), configured_roots())
    source = open_source(
        value,
        open_binary=open_target_uri,
        column=column,
        encoding=encoding,
        roots=roots,
        trusted=trusted,
        sitemap_max_urls=sitemap_max_urls,
        sitemap_max_files=sitemap_max_files,
    )
    try:
        return normalise_stream(source)
    except InvalidTargetsError as exc:
        raise source.relabel(exc) from None


def _union(*groups: list[str] | None) -> list[str] | None:
    roots = [root for group in groups if group for root in group]
    return list(dict.fromkeys(roots)) or None


def read_targets(value: object, **options: Any) -> TargetSet:
    """:func:`read_targets_streaming` as a :class:`~airflow_provider_dataforseo.targets.TargetSet`."""
    return read_targets_streaming(value, **options).target_set()


def is_literal(value: object) -> bool:
    """Whether a ``targets`` argument was written in the DAG file: a string with no template."""
    return isinstance(value, str) and "{{" not in value and "{%" not in value
