"""Memory check: 1,000,000 targets through the operator's path, peak RSS over the process's baseline.

One command (from the repository root)::

    .venv/bin/python -m benchmarks.memory --targets 1000000

It writes a file of ``--targets`` targets (``realistic`` shape, see :mod:`benchmarks.datasets`),
starts the plain emulator (``python -m airflow_provider_dataforseo.emulator``, zero latency, the
30-request limit) in its own process, and measures, each in a fresh process without the Airflow
scheduler (the operators' ``execute`` is called directly, as a worker would):

- ``mapped``: :func:`~airflow_provider_dataforseo.operators.plan.plan_bulk_pages_summary` streams
  the file and writes the groups, then one
  :class:`~airflow_provider_dataforseo.operators.bulk_pages_summary.BulkPagesSummaryOperator` per
  group runs (one after another, as mapped tasks on one worker would), then the manifests are
  merged. Peak RSS is reported for the planning step and for the whole run;
- ``single``: ONE ``BulkPagesSummaryOperator`` given the file of 1,000,000 targets.

Baseline = the process's RSS after its imports, before any target is read. The peak is the
kernel's high-water mark (``VmHWM``, reset to the baseline just before the run). Not part of the
test suite; takes a few minutes (the emulator computes 1,000,000 items).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.datasets import generate
from benchmarks.run import LOGIN, PASSWORD, REPO, _reset_peak_rss, _status_kb, _wait_ready

PATHS = ("mapped", "single")


def _measure(path: str, targets_uri: str, out_uri: str, concurrency: int) -> dict[str, Any]:
    """Run one path in this process; return the measurements."""
    import logging

    logging.disable(logging.INFO)
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
    from airflow_provider_dataforseo.operators.plan import plan_bulk_pages_summary
    from airflow_provider_dataforseo.planning import merge_manifests

    baseline_kb = _status_kb("VmRSS")
    if not _reset_peak_rss():
        raise RuntimeError("this kernel cannot reset the peak-RSS mark (/proc/self/clear_refs)")
    started = time.perf_counter()
    result: dict[str, Any] = {"path": path, "baseline_mb": baseline_kb / 1024}
    plan_peak_kb = 0
    if path == "mapped":
        descriptors = plan_bulk_pages_summary(targets_uri, f"{out_uri}/groups/")
        result["plan_s"] = time.perf_counter() - started
        plan_peak_kb = _status_kb("VmHWM")
        result["plan_peak_over_baseline_mb"] = (plan_peak_kb - baseline_kb) / 1024
        result["groups"] = len(descriptors)
        fetch_start_kb = _status_kb("VmRSS")
        _reset_peak_rss()  # the fetch phase's own peak, over the RSS it starts from
        manifests = []
        for index, descriptor in enumerate(descriptors):
            operator = BulkPagesSummaryOperator(
                task_id=f"fetch_{index}",
                chunk_group=descriptor,
                output_path=f"{out_uri}/part-{index}/",
                max_active_requests=concurrency,
            )
            manifests.append(operator.execute({}))
        manifest = merge_manifests(manifests)
        del manifest["part_uris"]
        result["fetch_peak_over_start_mb"] = (_status_kb("VmHWM") - fetch_start_kb) / 1024
    else:
        operator = BulkPagesSummaryOperator(
            task_id="fetch",
            targets=targets_uri,
            output_path=f"{out_uri}/",
            max_active_requests=concurrency,
        )
        manifest = operator.execute({})
    result["wall_s"] = time.perf_counter() - started
    peak_kb = max(_status_kb("VmHWM"), plan_peak_kb)
    result["peak_over_baseline_mb"] = (peak_kb - baseline_kb) / 1024
    result["manifest"] = manifest
    return result


def _start_emulator() -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "airflow_provider_dataforseo.emulator",
        "--port",
        "0",
        "--latency",
        "0",
        "--max-simultaneous",
        "30",
        "--balance",
        "1000000",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    _wait_ready(match.group(1))
    return proc, match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets", type=int, default=1_000_000, help="number of targets (default 1,000,000)"
    )
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--concurrency", type=int, default=30, help="requests in flight (default 30)")
    parser.add_argument(
        "--limit-mb", type=float, default=200.0, help="the goal, MB over baseline (default 200)"
    )
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--targets-uri", help=argparse.SUPPRESS)
    parser.add_argument("--out-uri", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.targets_uri, args.out_uri, args.concurrency)))
        return 0

    failed = False
    with tempfile.TemporaryDirectory(prefix="dataforseo-memory-") as folder:
        listing = Path(folder) / "targets.txt"
        with listing.open("w", encoding="utf-8") as handle:
            handle.writelines(target + "\n" for target in generate(args.targets, "realistic"))
        print(
            f"# {args.targets:,} targets in {listing} ({listing.stat().st_size / 2**20:.0f} MB)", flush=True
        )
        proc, url = _start_emulator()
        env = {
            **os.environ,
            "AIRFLOW_CONN_DATAFORSEO_DEFAULT": json.dumps(
                {"conn_type": "dataforseo", "login": LOGIN, "password": PASSWORD, "host": url}
            ),
        }
        try:
            for path in args.paths:
                out = Path(folder) / path
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.memory",
                    "--child",
                    path,
                    "--targets-uri",
                    listing.as_uri(),
                    "--out-uri",
                    out.as_uri(),
                    "--concurrency",
                    str(args.concurrency),
                ]
                done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"{path} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                over = result["peak_over_baseline_mb"]
                ok = over <= args.limit_mb
                failed |= not ok
                verdict = "ok" if ok else "OVER"
                line = (
                    f"{path}: peak RSS {over:.0f} MB over a baseline of {result['baseline_mb']:.0f} MB "
                    f"({verdict}: goal {args.limit_mb:.0f} MB) in {result['wall_s']:.0f} s"
                )
                if path == "mapped":
                    line += (
                        f"; planning alone {result['plan_peak_over_baseline_mb']:.0f} MB in "
                        f"{result['plan_s']:.1f} s, {result['groups']} groups; the fetches "
                        f"{result['fetch_peak_over_start_mb']:.0f} MB over the RSS they started from"
                    )
                print(f"{line}\n  manifest: {json.dumps(result['manifest'])}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
