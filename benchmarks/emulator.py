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
   100-main-domain check) are memoised per target string.

At start-up a self-check compares the memoised items with freshly generated ones.

Run by ``benchmarks/run.py``; by hand::

    python -m benchmarks.emulator --latency 0.3 --max-simultaneous 30 --warm 1000:realistic

It prints ``READY <url>`` once it serves.
"""

from __future__ import annotations

import argparse
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import msgspec
import uvicorn
from starlette.responses import JSONResponse

from benchmarks.datasets import generate

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from fastapi import FastAPI

_MISSING = object()


class _MsgspecJSONResponse(JSONResponse):
    """A JSONResponse encoded with msgspec (which also writes ``msgspec.Raw`` fragments as is)."""

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def build_app(
    *,
    latency: float,
    max_simultaneous: int | None,
    balance: float = 1_000_000.0,
    warm: Iterable[str] = (),
) -> FastAPI:
    """The emulator app with memoised per-target work (see the module doc).

    :param latency: seconds each bulk request takes before it answers.
    :param max_simultaneous: the simultaneous-request limit to enforce (40209 above it).
    :param balance: the account's starting balance, USD.
    :param warm: targets whose items are computed before the app is returned.
    :return: the app.
    :raises RuntimeError: when memoised items differ from generated ones.
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

    # patched by name: app.py looks these up at call time
    setattr(data, "summary_items", summary_items)  # noqa: B010
    setattr(app_module, "is_valid_target", is_valid_target)  # noqa: B010
    setattr(app_module, "count_main_domains", count_main_domains)  # noqa: B010
    setattr(app_module, "JSONResponse", _MsgspecJSONResponse)  # noqa: B010

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

    app = app_module.create_app(
        EmulatorConfig(balance_usd=balance, latency_seconds=latency, max_simultaneous=max_simultaneous)
    )
    return app


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
    args = parser.parse_args(argv)
    from airflow_provider_dataforseo.emulator.server import base_url, bind_socket

    warm: list[str] = []
    for spec in args.warm:
        n, _, shape = spec.partition(":")
        warm.extend(generate(int(n), shape or "realistic"))
    app = build_app(latency=args.latency, max_simultaneous=args.max_simultaneous, warm=warm)
    sock = bind_socket("127.0.0.1", 0)
    url = base_url("127.0.0.1", sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
    )
    print(f"READY {url}", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
