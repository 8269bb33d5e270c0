"""The emulator as the benchmark serves it: the real app, its per-target work memoised and warmed.

The emulator computes every item from SHA-256-seeded generators (~0.1 ms per item) and encodes
and gzips every reply on ONE event loop; on a 2-core machine that alone takes ~0.15 s per
1000-target request, which the client's CPU then has to share. The real API's servers do not share
our cores. So that the benchmark measures the client and the request schedule, not the emulator's
own CPU, this process runs the unchanged app (same validation, limits, latency, prices, envelope,
items, gzip) with three semantics-preserving changes:

1. items are memoised per ``(target, options)`` and pre-computed for the benchmark's targets before
   the emulator reports ready, and stored as pre-encoded JSON (``msgspec.Raw``);
2. replies are encoded with ``msgspec`` instead of the standard ``json`` module;
3. ``is_valid_target``, the sort key of items and each target's main domain (for the
   100-main-domain check) are memoised per target string, and the check of a request's
   ``targets`` per target list;
4. replies rendered ahead: the requests of every method are known before the timed runs
   (:func:`benchmarks.run.method_chunks`), so the warm-up renders each request's items as JSON and
   gzips them, keyed by the request body's targets and options. A reply to such a request is then
   the envelope around them, sent as ONE gzip member whose deflate stream is three pieces: the
   envelope's head and tail compressed per request, the items compressed ahead (each piece ends
   on a byte boundary, RFC 1951 sync flush; the CRC-32 is computed per request, ~0.5 ms). (Three
   gzip members would be valid RFC 1952 too, but urllib3 2.x mis-decodes some member
   boundaries.)
   so the emulator's CPU per request is negligible and its core does not set the pace. Every
   other request (a refused slice, a fault) goes the app's own way.

At start-up a self-check compares the memoised items with freshly generated ones, and a reply
rendered ahead with the app's own reply to the same request.

Run by ``benchmarks/run.py``; by hand::

    python -m benchmarks.emulator --latency 0.3 --max-simultaneous 30 --warm 1000:realistic

It prints ``READY <url>`` once it serves.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from starlette.responses import JSONResponse, Response

from benchmarks.datasets import generate

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from fastapi import FastAPI
    from starlette.requests import Request

_MISSING = object()
#: Stands for the items in an envelope rendered around items rendered ahead.
_ITEMS_MARK = b'"@@items-rendered-ahead@@"'


class _AheadItems(list[Any]):
    """Items of a request whose JSON and gzip member were rendered ahead (``key`` finds them)."""

    key: tuple[Any, ...]


#: key -> (the items' JSON, the same as raw deflate ending in a sync flush)
_AHEAD: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}


class _MsgspecJSONResponse(JSONResponse):
    """A JSONResponse encoded with msgspec (which also writes ``msgspec.Raw`` fragments as is).

    Around items rendered ahead it keeps the envelope's head and tail apart (``gzip_parts``).
    """

    gzip_parts: tuple[bytes, bytes, bytes] | None = None
    items_key: tuple[Any, ...] = ()

    def render(self, content: Any) -> bytes:
        items = _ahead_items(content)
        if items is None:
            return msgspec.json.encode(content)
        result = content["tasks"][0]["result"][0]
        result["items"] = msgspec.Raw(_ITEMS_MARK)
        try:
            head, tail = msgspec.json.encode(content).split(_ITEMS_MARK)
        finally:
            result["items"] = items
        items_json, items_deflate = _AHEAD[items.key]
        self.gzip_parts = (head, items_deflate, tail)
        self.items_key = items.key
        return head + items_json + tail


#: gzip member header: deflate, no flags, no mtime, unknown OS (RFC 1952)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(data: bytes, *, final: bool) -> bytes:
    """Raw deflate of ``data`` at the app's gzip level; a sync flush (byte-aligned, the stream goes
    on) unless ``final``."""
    compressor = zlib.compressobj(_gzip_level(), zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _gzip_level() -> int:
    from airflow_provider_dataforseo.emulator.app import GZIP_LEVEL

    return GZIP_LEVEL


def _ahead_items_key(reply: Any) -> tuple[Any, ...]:
    key: tuple[Any, ...] = reply.items_key
    return key


def _ahead_items(content: Any) -> _AheadItems | None:
    try:
        items = content["tasks"][0]["result"][0]["items"]
    except (KeyError, IndexError, TypeError):
        return None
    return items if isinstance(items, _AheadItems) else None


def _ahead_key(targets: Any, include_subdomains: bool, rank_scale: str, as_of: Any) -> tuple[Any, ...]:
    return (tuple(targets), include_subdomains, rank_scale, as_of)


def build_app(
    *,
    latency: float,
    max_simultaneous: int | None,
    balance: float = 1_000_000.0,
    warm: Iterable[str] = (),
    ahead: Sequence[list[str]] = (),
) -> FastAPI:
    """The emulator app with memoised per-target work (see the module doc).

    :param latency: seconds each bulk request takes before it answers.
    :param max_simultaneous: the simultaneous-request limit to enforce (40209 above it).
    :param balance: the account's starting balance, USD.
    :param warm: targets whose items are computed before the app is returned.
    :param ahead: requests' targets (as sent) whose replies' items are rendered and gzipped ahead.
    :return: the app.
    :raises RuntimeError: when memoised items differ from generated ones, or a reply rendered
        ahead from the app's own.
    """
    from airflow_provider_dataforseo.emulator import app as app_module
    from airflow_provider_dataforseo.emulator import data
    from airflow_provider_dataforseo.emulator.server import EmulatorConfig

    original_items = data.summary_items
    original_item = data.summary_item
    cache: dict[tuple[str, bool, str, Any], msgspec.Raw | None] = {}
    order_key = lru_cache(maxsize=None)(data.order_key)

    epoch = getattr(data, "DATA_AS_OF", None)

    def item_raw(target: str, include_subdomains: bool, rank_scale: str, as_of: Any) -> msgspec.Raw | None:
        # summary_item's contract: as_of None or up to the data's epoch gives the epoch's item
        on_epoch = as_of is None or (epoch is not None and as_of <= epoch.date())
        key = (target, include_subdomains, rank_scale, None if on_epoch else as_of)
        raw = cache.get(key, _MISSING)
        if raw is _MISSING:
            item = original_item(
                target, include_subdomains=include_subdomains, rank_scale=rank_scale, as_of=as_of
            )
            raw = None if item is None else msgspec.Raw(msgspec.json.encode(item))
            cache[key] = raw
        return raw  # type: ignore[return-value]

    def summary_items(
        targets: Iterable[str],
        *,
        include_subdomains: bool = True,
        rank_scale: str = "one_thousand",
        as_of: Any = None,
    ) -> list[Any]:
        targets = list(targets)
        on_epoch = as_of is None or (epoch is not None and as_of <= epoch.date())
        key = _ahead_key(targets, include_subdomains, rank_scale, None if on_epoch else as_of)
        ahead = _AHEAD_ITEMS.get(key)
        if ahead is not None:
            _AHEAD_HITS.append(1)
            return ahead
        items = []
        for target in sorted(dict.fromkeys(targets), key=order_key):
            raw = item_raw(target, include_subdomains, rank_scale, as_of)
            if raw is not None:
                items.append(raw)
        return items

    original_valid = app_module.is_valid_target
    valid_cache: dict[str, bool] = {}

    def is_valid_target(value: object) -> bool:
        if not isinstance(value, str):
            return original_valid(value)
        known = valid_cache.get(value)
        if known is None:
            known = valid_cache[value] = original_valid(value)
        return known

    original_count = app_module.count_main_domains
    domain_cache: dict[str, str] = {}

    def count_main_domains(targets: list[str]) -> int:
        domains = set()
        for target in targets:
            domain = domain_cache.get(target)
            if domain is None:
                host = app_module.target_host(target).lower()
                domain = domain_cache[target] = app_module.main_domain(host) or host
            domains.add(domain)
        return len(domains)

    original_targets_error = app_module._targets_error
    targets_errors: dict[tuple[str, ...], str | None] = {}

    def targets_error(targets: object) -> str | None:
        if not isinstance(targets, list) or not all(isinstance(target, str) for target in targets):
            return original_targets_error(targets)
        key = tuple(targets)
        known = targets_errors.get(key, _MISSING)
        if known is _MISSING:
            known = targets_errors[key] = original_targets_error(targets)
        return known  # type: ignore[return-value]

    original_compress = app_module.compress_reply

    def compress_reply(request: Request, reply: Response) -> Response:
        parts = getattr(reply, "gzip_parts", None)
        if parts is None or "gzip" not in request.headers.get("accept-encoding", ""):
            return original_compress(request, reply)
        head, items_deflate, tail = parts
        items_json = _AHEAD[_ahead_items_key(reply)][0]
        headers = {k: v for k, v in reply.headers.items() if k != "content-length"}
        headers["content-encoding"] = "gzip"
        headers["vary"] = "Accept-Encoding"
        crc = zlib.crc32(tail, zlib.crc32(items_json, zlib.crc32(head)))
        size = len(head) + len(items_json) + len(tail)
        body = b"".join(
            (
                _GZIP_HEADER,
                _deflate(head, final=False),
                items_deflate,
                _deflate(tail, final=True),
                struct.pack("<II", crc, size & 0xFFFFFFFF),
            )
        )
        return Response(content=body, status_code=reply.status_code, headers=headers)

    # patched by name: app.py looks these up at call time
    setattr(data, "summary_items", summary_items)  # noqa: B010
    setattr(app_module, "is_valid_target", is_valid_target)  # noqa: B010
    setattr(app_module, "count_main_domains", count_main_domains)  # noqa: B010
    setattr(app_module, "JSONResponse", _MsgspecJSONResponse)  # noqa: B010
    setattr(app_module, "compress_reply", compress_reply)  # noqa: B010
    setattr(app_module, "_targets_error", targets_error)  # noqa: B010

    warm_list = list(warm)
    for target in warm_list:
        is_valid_target(target)
        item_raw(target, True, "one_thousand", None)
        order_key(target)
        count_main_domains([target])
    sample = warm_list[:: max(1, len(warm_list) // 500)][:500] or ["example.com", "https://example.org/a"]
    for as_of in (None, epoch.date() if epoch is not None else None):
        memoised = msgspec.json.decode(msgspec.json.encode(summary_items(sample, as_of=as_of)))
        if memoised != original_items(sample, as_of=as_of):
            raise RuntimeError("memoised items differ from generated ones")
    chunks = [sample[i : i + 100] for i in range(0, len(sample), 100)]
    if [count_main_domains(chunk) for chunk in chunks] != [original_count(chunk) for chunk in chunks]:
        raise RuntimeError("memoised main domains differ from computed ones")

    for chunk in ahead:
        key = _ahead_key(chunk, True, "one_thousand", None)
        if key in _AHEAD:
            continue
        items = _AheadItems(summary_items(chunk))
        items.key = key
        items_json = msgspec.json.encode(list(items))
        _AHEAD[key] = (items_json, _deflate(items_json, final=False))
        _AHEAD_ITEMS[key] = items
        targets_error(chunk)
    app = app_module.create_app(
        EmulatorConfig(balance_usd=balance, latency_seconds=latency, max_simultaneous=max_simultaneous)
    )
    if ahead:
        _check_ahead(app, ahead[0])
    return app


#: key -> the items rendered ahead, as summary_items returns them
_AHEAD_ITEMS: dict[tuple[Any, ...], _AheadItems] = {}
#: one entry per request answered with items rendered ahead (the self-check counts them)
_AHEAD_HITS: list[int] = []


def _check_ahead(app: FastAPI, chunk: list[str]) -> None:
    """The reply to ``chunk`` rendered ahead equals the app's own (ids and times aside).

    :raises RuntimeError: when they differ.
    """
    from starlette.testclient import TestClient

    body = [{"targets": chunk, "include_subdomains": True}]
    hits = len(_AHEAD_HITS)
    path = "/v3/backlinks/bulk_pages_summary/live"
    auth = ("emulator", "emulator")
    with TestClient(app) as client:
        # the raw bytes: httpx (the test client) reads only the first gzip member, urllib3 all
        with client.stream("POST", path, json=body, auth=auth, headers={"accept-encoding": "gzip"}) as reply:
            encoding = reply.headers.get("content-encoding")
            ahead = msgspec.json.decode(gzip.decompress(b"".join(reply.iter_raw())))
        key = _ahead_key(chunk, True, "one_thousand", None)
        saved = _AHEAD_ITEMS.pop(key)
        try:
            own = client.post(path, json=body, auth=auth).json()
        finally:
            _AHEAD_ITEMS[key] = saved
    if len(_AHEAD_HITS) != hits + 1 or encoding != "gzip":
        raise RuntimeError("the request was not answered from its gzipped reply rendered ahead")

    def comparable(payload: dict[str, Any]) -> dict[str, Any]:
        task = payload["tasks"][0]
        return {**payload, "time": None, "tasks": [{**task, "id": None, "time": None}]}

    if comparable(ahead) != comparable(own):
        raise RuntimeError("a reply rendered ahead differs from the app's own reply")


def main(argv: Sequence[str] | None = None) -> int:
    """Warm, bind 127.0.0.1 on a free port, print ``READY <url>``, serve until terminated."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request (default 0.3)")
    parser.add_argument(
        "--max-simultaneous", type=int, default=30, help="requests in flight allowed (default 30)"
    )
    parser.add_argument(
        "--warm",
        nargs="*",
        default=[],
        metavar="N:SHAPE",
        help="datasets to pre-compute, e.g. 1000:realistic",
    )
    parser.add_argument(
        "--no-ahead",
        dest="ahead",
        action="store_false",
        help="do not render the replies of the datasets' requests ahead (the app renders each)",
    )
    args = parser.parse_args(argv)
    from airflow_provider_dataforseo.emulator.server import base_url, bind_socket
    from benchmarks.run import method_chunks

    warm: list[str] = []
    ahead: list[list[str]] = []
    for spec in args.warm:
        n, _, shape = spec.partition(":")
        targets = generate(int(n), shape or "realistic")
        warm.extend(targets)
        if args.ahead:
            for chunks in method_chunks(targets).values():
                ahead.extend(chunks)
    app = build_app(latency=args.latency, max_simultaneous=args.max_simultaneous, warm=warm, ahead=ahead)
    sock = bind_socket("127.0.0.1", 0)
    url = base_url("127.0.0.1", sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
    )
    import gc

    gc.freeze()  # the warmed caches (millions of objects) are not walked by each collection
    print(f"READY {url}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
