"""Proof under faults: 5,000 targets against the fault-injecting emulator, run by the real operator.

For every fault kind, for 40501 rejections, and for a mix of all kinds at 20 %, a run either ends
with exactly the rows of a fault-free run (compared line by line, ``task_id`` aside: it names the
API task that answered) or fails with the right error and no duplicate rows; a retry of a failed
run fetches only what is missing and pays nothing twice. Also: the client-side limiter, the cost
guard, and the checkpoint.

The emulator runs in its own process (``dataforseo-emulator``, stopped by pid at the end), so that
it and the client use both cores. Retries wait milliseconds (``hook_params``) and the read timeout
is 2 s where a request may hang, so a ``hang`` costs two seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.checkpoint import Checkpoint, CheckpointError, chunk_digest
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_dataforseo.emulator.faults import FAULT_KINDS
from airflow_provider_dataforseo.exceptions import DataForSeoRateLimitError, DataForSeoServerError
from airflow_provider_dataforseo.fetch import ChunkOutcome
from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.ratelimit import RequestLimiter, estimate_cost_usd
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, conn_json, run_dag, s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONN_ID = "dataforseo_proof"
#: Read timeout of runs where a request may hang: a hang costs this long.
HANG_READ_TIMEOUT = 1.0
#: How long a hung request waits before it answers (past the read timeout).
HANG_SECONDS = 1.5
FAST = {
    "retry_wait_min": 0.001,
    "retry_wait_max": 0.005,
    "max_attempts": 12,
    "max_retry_seconds": 60.0,
    "timeout": (5.0, 20.0),  # generous: on a busy machine a reply may queue behind others
}
#: A trickling reply is cut off at this deadline (each of its bytes arrives inside the read timeout).
TRICKLE_DEADLINE = 2.0
HANGING = {"timeout": (5.0, HANG_READ_TIMEOUT), "request_deadline": TRICKLE_DEADLINE}
SEED = 11
#: The fault kinds of the issue, each run on its own: kind -> {emulator fault: share of requests}.
#: The five status codes inside a 200 envelope are one kind (each gets a fifth of its share).
KINDS: dict[str, dict[str, float]] = {
    "http_500": {"http_500": 0.3},
    "status_in_200_envelope": dict.fromkeys(
        ["status_40202", "status_40209", "status_50000", "status_50301", "status_50401"], 0.06
    ),
    "failed_task_in_20000_envelope": {"task_error": 0.3},
    "hang_past_read_timeout": {"hang": 0.15},
    "slow": {"slow": 0.3},
    "connection_closed_mid_body": {"disconnect": 0.3},
    "truncated_body": {"truncated": 0.3},
    "not_json_body": {"not_json": 0.3},
    "dropped_items": {"drop_items": 0.3},
    "trickling_body": {"trickle": 0.15},
}
#: Kinds that fail requests without charging: one extra request per fault, the spend of a clean run.
UNCHARGED = {"http_500", "status_in_200_envelope", "failed_task_in_20000_envelope", "not_json_body"}
#: Kinds whose reply was computed and charged but never read by the client.
LOST_REPLIES = {"hang_past_read_timeout", "connection_closed_mid_body", "truncated_body", "trickling_body"}

_DOMAINS = [
    line.split(",")[1] for line in (REPO / "example_dags/data/top-domains-20k.csv").read_text().split()
]
#: 2,500 domains and their 2,500 home pages: 5,000 targets, 25 requests of 200.
TARGETS = _DOMAINS[:2500] + [f"https://{domain}/" for domain in _DOMAINS[:2500]]
CHUNKS = plan_chunks(normalise_targets(TARGETS).targets)
#: 1,000 other domains: 10 requests of 100 main domains (for the cost guard).
SMALL_TARGETS = _DOMAINS[2500:3500]
SMALL_CHUNKS = plan_chunks(normalise_targets(SMALL_TARGETS).targets)


# ---------------------------------------------------------------------------------------------
# The emulator in its own process, and a fault-free baseline
# ---------------------------------------------------------------------------------------------


@dataclass
class Emulator:
    """A ``dataforseo-emulator`` process and its control API."""

    url: str
    process: subprocess.Popen[str]

    def configure(self, **settings: Any) -> None:
        reply = requests.put(f"{self.url}/_emulator/fault-injection", json=settings, timeout=5)
        assert reply.status_code == 200, reply.text

    def injection(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.url}/_emulator/fault-injection", timeout=5).json())

    def switch_off(self) -> None:
        self.settle()
        requests.delete(f"{self.url}/_emulator/fault-injection", timeout=5).raise_for_status()
        requests.delete(f"{self.url}/_emulator/faults", timeout=5).raise_for_status()

    def script(self, *faults: dict[str, Any]) -> None:
        requests.post(
            f"{self.url}/_emulator/faults", json={"faults": list(faults)}, timeout=5
        ).raise_for_status()

    def settle(self) -> None:
        """Wait until no hung request is still waiting to answer (and be charged)."""
        deadline = time.monotonic() + 30
        pause = threading.Event()
        while self.injection()["delaying"]:
            assert time.monotonic() < deadline, "hung requests did not finish"
            pause.wait(0.05)

    def stats(self) -> dict[str, Any]:
        self.settle()
        return dict(requests.get(f"{self.url}/_emulator/stats", timeout=5).json())


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    log_file = (tmp_path_factory.mktemp("emulator") / "stderr.log").open("w")
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "airflow_provider_dataforseo.emulator",
                "--port",
                "0",
                "--balance",
                "100000",
            ),
            *("--login", EMULATOR_LOGIN, "--password", EMULATOR_PASSWORD, "--log-level", "warning"),
        ],
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"listening on (http://\S+)", process.stdout.readline())
        assert match, "the emulator did not print its address"
        emulator = Emulator(url=match.group(1), process=process)
        deadline = time.monotonic() + 30
        while True:  # the socket listens before uvicorn serves: poll until it answers
            try:
                emulator.injection()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None, "the emulator did not start"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", conn_json(emulator.url))
            yield emulator
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log_file.close()


@dataclass
class Run:
    manifest: dict[str, Any]
    lines: list[str]  # the rows file, task_id removed
    spent_usd: float  # what the emulator charged during the run
    requests: int  # HTTP requests the emulator received
    limiter: RequestLimiter


def _rows(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [json.dumps({k: v for k, v in row.items() if k != "task_id"}, sort_keys=True) for row in rows]


def run(emulator: Emulator, out: Path, **kwargs: Any) -> Run:
    """Run the operator over the 5,000 targets into ``out`` and measure the emulator around it."""
    before = emulator.stats()
    operator = BulkPagesSummaryOperator(
        task_id="proof",
        targets=kwargs.pop("targets", TARGETS),
        output_path=out.as_uri() + "/",
        dataforseo_conn_id=CONN_ID,
        max_active_requests=kwargs.pop("max_active_requests", 8),
        hook_params={**FAST, **kwargs.pop("hook_params", {})},
        **kwargs,
    )
    try:
        manifest = operator.execute({})  # type: ignore[arg-type]
    finally:
        after = emulator.stats()
        run.last = (before, after, operator)  # type: ignore[attr-defined]
    lines = _rows(out / "bulk_pages_summary.jsonl")
    return Run(
        manifest=manifest,
        lines=lines,
        spent_usd=round(after["spent_usd"] - before["spent_usd"], 5),
        requests=after["api_requests"] - before["api_requests"],
        limiter=operator.hook.limiter,
    )


def spent_since(emulator: Emulator, before: dict[str, Any]) -> float:
    return round(emulator.stats()["spent_usd"] - before["spent_usd"], 5)


@pytest.fixture(scope="module")
def baseline(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Run:
    emulator.switch_off()
    clean = run(emulator, tmp_path_factory.mktemp("baseline"))
    assert len(CHUNKS) == 25 and clean.manifest["targets"] == 5000
    assert clean.requests == 25 and clean.manifest["requests"] == 25
    assert clean.spent_usd == pytest.approx(clean.manifest["cost_usd"], abs=1e-9)
    assert len(clean.lines) == clean.manifest["items"] > 4500
    return clean


@pytest.fixture(autouse=True)
def _faults_off(emulator: Emulator) -> Iterator[None]:
    emulator.switch_off()
    yield
    emulator.switch_off()


def _same_manifest(manifest: dict[str, Any], clean: dict[str, Any]) -> None:
    for key in ("targets", "items", "missing_targets", "unmatched_items", "rejected_targets"):
        assert manifest[key] == clean[key], key


def _assert_no_duplicates(lines: list[str]) -> None:
    targets = [json.loads(line)["target"] for line in lines]
    assert len(targets) == len(set(targets))


def _only_results(out: Path) -> None:
    names = ["bulk_pages_summary.jsonl", "bulk_pages_summary.jsonl.checkpoint", "manifest.json"]
    # missing_targets.txt lists the targets without data when there are many (sources' feature)
    assert sorted(p.name for p in out.iterdir() if p.name != "missing_targets.txt") == names
    # the chunks are gone; the completion marker, the run's name and the spend ledger stay
    marker = out / "bulk_pages_summary.jsonl.checkpoint"
    assert sorted(p.name for p in marker.iterdir()) == ["done.json", "ledger.json", "run.json"]


# ---------------------------------------------------------------------------------------------
# Every fault kind, the 40501 rejections, and the 20 % mix
# ---------------------------------------------------------------------------------------------


def test_the_kinds_cover_every_emulator_fault() -> None:
    assert sorted(fault for rates in KINDS.values() for fault in rates) == sorted(FAULT_KINDS)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_fault_kind_ends_with_exactly_the_rows_of_a_fault_free_run(
    emulator: Emulator, baseline: Run, kind: str, tmp_path: Path
) -> None:
    emulator.configure(rates=KINDS[kind], seed=SEED, hang_seconds=HANG_SECONDS, slow_seconds=0.05)
    slow_kinds = ("hang_past_read_timeout", "trickling_body")
    result = run(emulator, tmp_path, hook_params=HANGING if kind in slow_kinds else {})
    by_fault = emulator.injection()["injected"]
    assert set(by_fault) <= set(KINDS[kind]) and len(by_fault) >= min(3, len(KINDS[kind]))
    injected = sum(by_fault.values())
    assert injected >= 3
    assert result.lines == baseline.lines  # row by row, in the same order, none lost or doubled
    _same_manifest(result.manifest, baseline.manifest)
    _only_results(tmp_path)  # the chunks' parts are gone after success
    assert result.limiter.started == result.requests  # every attempt went through the limiter
    assert result.limiter.peak_in_flight <= 8
    if kind in UNCHARGED:
        assert result.spent_usd == baseline.spent_usd  # nothing paid twice
        assert result.manifest["cost_usd"] == baseline.manifest["cost_usd"]
        assert result.requests == 25 + injected
    elif kind == "slow":  # slow but within the read timeout: nothing to retry
        assert result.requests == 25 and result.spent_usd == baseline.spent_usd
    elif kind in LOST_REPLIES:
        # the API charged replies the client never read; the manifest counts what replies said
        assert result.spent_usd > baseline.spent_usd
        assert result.manifest["cost_usd"] == baseline.manifest["cost_usd"]
    else:  # rows are kept and only the targets left without an item are asked again
        assert kind == "dropped_items"
        assert result.manifest["requests"] == 25 + injected
        assert result.manifest["cost_usd"] == pytest.approx(result.spent_usd, abs=1e-9)


def _rejected_choice() -> list[str]:
    """One known and one unknown target in each of three chunks (input order)."""
    from airflow_provider_dataforseo.emulator.data import summary_item

    chosen: list[str] = []
    for chunk in (CHUNKS[3], CHUNKS[12], CHUNKS[24]):
        chosen.append(next(t for t in chunk[50:] if summary_item(t) is not None))
    chosen.append(next(t for t in CHUNKS[12] if summary_item(t) is None))
    order = {t: i for i, t in enumerate(normalise_targets(TARGETS).targets)}
    return sorted(chosen, key=order.__getitem__)


def _without(lines: list[str], targets: list[str]) -> list[str]:
    return [line for line in lines if json.loads(line)["target"] not in set(targets)]


def test_40501_targets_are_isolated_by_bisection_and_reported_by_name(
    emulator: Emulator, baseline: Run, tmp_path: Path
) -> None:
    rejected = _rejected_choice()
    emulator.configure(reject_targets=rejected)
    result = run(emulator, tmp_path)
    assert result.manifest["rejected_targets"] == rejected
    assert result.lines == _without(baseline.lines, rejected)
    assert result.manifest["items"] == baseline.manifest["items"] - 3  # three of them had an item
    assert result.manifest["missing_targets"] == baseline.manifest["missing_targets"] - 1
    assert result.manifest["cost_usd"] == pytest.approx(result.spent_usd, abs=1e-9)
    extra = result.requests - 25
    assert 0 < extra <= 3 * 40  # bounded: at most 40 extra requests per chunk


def test_a_mix_of_every_fault_at_20_percent_with_rejections(
    emulator: Emulator, baseline: Run, tmp_path: Path
) -> None:
    rejected = _rejected_choice()
    shares = {kind: 0.2 / len(FAULT_KINDS) for kind in FAULT_KINDS}
    emulator.configure(
        rates=shares, seed=SEED, hang_seconds=HANG_SECONDS, slow_seconds=0.05, reject_targets=rejected
    )
    result = run(emulator, tmp_path, hook_params=HANGING)
    injected = emulator.injection()["injected"]
    assert sum(injected.values()) >= 5
    assert result.lines == _without(baseline.lines, rejected)
    assert result.manifest["rejected_targets"] == rejected
    _assert_no_duplicates(result.lines)
    _only_results(tmp_path)


# ---------------------------------------------------------------------------------------------
# Failing runs: the right error, no duplicates, and a retry that fetches only what is missing
# ---------------------------------------------------------------------------------------------


def test_a_fault_that_never_clears_fails_with_its_code_and_writes_no_rows(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.configure(rates={"status_50301": 1.0})
    with pytest.raises(DataForSeoServerError) as info:
        run(emulator, tmp_path, hook_params={"max_attempts": 3})
    message = str(info.value)
    assert info.value.status_code == api.TEMPORARILY_UNAVAILABLE
    assert re.search(r"\(request of 200 targets: [^,]+, [^,]+, [^,]+, [^,]+, [^ ]+ and 195 more\)", message)
    assert not (tmp_path / "bulk_pages_summary.jsonl").exists()  # nothing half-written, no duplicates
    before, after, _ = run.last  # type: ignore[attr-defined]
    assert after["spent_usd"] == before["spent_usd"]
    # 8 chunks in flight and 8 standing by for a request slot (they take the slots of chunks
    # waiting out a backoff): the first to fail used its 3 attempts; then the others' retries stop
    # (the task is failing: nothing waits on them but the grace period)
    assert 8 + 2 <= after["api_requests"] - before["api_requests"] <= 16 * 3
    assert Checkpoint(tmp_path / "bulk_pages_summary.jsonl", CHUNKS, _options()).load() == {}


def test_a_permanent_error_fails_at_once_naming_the_chunk(emulator: Emulator, tmp_path: Path) -> None:
    emulator.script({"task_status": api.ACCESS_DENIED})
    with pytest.raises(AirflowFailException) as info:
        run(emulator, tmp_path, max_active_requests=1)
    message = str(info.value)
    assert message.startswith("DataForSEO 40204: Access denied.")
    assert f"(request of 200 targets: {', '.join(CHUNKS[0][:5])} and 195 more)" in message
    before, after, _ = run.last  # type: ignore[attr-defined]
    assert after["api_requests"] - before["api_requests"] == 1  # not retried
    assert not (tmp_path / "bulk_pages_summary.jsonl").exists()


CAPTURED: dict[str, Any] = {}


@pytest.mark.usefixtures("airflow_db")
def test_partial_failure_airflow_retries_fetch_only_missing_chunks_and_pay_nothing_twice(
    emulator: Emulator, baseline: Run, tmp_path: Path
) -> None:
    """One attempt per request: a failed try keeps its finished chunks; Airflow's retry resumes."""
    listing = tmp_path / "targets.txt"  # a file: no template rendering of 5,000 strings per try
    listing.write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    emulator.configure(rates={"status_50000": 0.25}, seed=SEED)
    before = emulator.stats()
    with DAG(
        "proof_partial_failure", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")
    ) as dag:
        BulkPagesSummaryOperator(
            task_id="fetch",
            targets=listing.as_uri(),
            output_path=(tmp_path / "out").as_uri() + "/",
            dataforseo_conn_id=CONN_ID,
            max_active_requests=25,
            hook_params={**FAST, "max_attempts": 1},
            retries=10,
            retry_delay=timedelta(0),
        )
    dag_run: Any = run_dag(dag)
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "fetch")
    assert str(ti.state) == "success"
    assert ti.try_number >= 2
    after = emulator.stats()
    failures = emulator.injection()["injected"]["status_50000"]
    assert after["api_requests"] - before["api_requests"] == 25 + failures  # finished chunks not re-sent
    assert round(after["spent_usd"] - before["spent_usd"], 5) == baseline.spent_usd  # paid once
    assert _rows(tmp_path / "out" / "bulk_pages_summary.jsonl") == baseline.lines
    _only_results(tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# Cost guard
# ---------------------------------------------------------------------------------------------


def test_cost_guard_refuses_to_start_above_the_estimate(emulator: Emulator, tmp_path: Path) -> None:
    assert estimate_cost_usd(25, 5000) == 0.65
    with pytest.raises(AirflowFailException, match=r"^Cost guard: the plan of 25 requests for 5000 targets"):
        run(emulator, tmp_path, max_cost_usd=0.64999)
    before, after, _ = run.last  # type: ignore[attr-defined]
    assert after["api_requests"] == before["api_requests"]  # nothing was sent


def test_cost_guard_names_one_request_for_one_target_in_the_singular(
    emulator: Emulator, tmp_path: Path
) -> None:
    with pytest.raises(AirflowFailException, match=r"^Cost guard: the plan of 1 request for 1 target \("):
        run(emulator, tmp_path, targets=["example.com"], max_cost_usd=0.00001)


def test_isolation_stops_at_the_cap_and_the_task_finishes_naming_what_it_could_not_settle(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Isolating a refused target in the last chunk needs more than the cap leaves: the search stops
    before the cap, the task succeeds, and the targets it could not settle are named."""
    assert len(SMALL_CHUNKS) == 10
    clean = run(emulator, tmp_path / "clean", targets=SMALL_TARGETS)
    estimate = estimate_cost_usd(10, 1000)
    assert clean.spent_usd < estimate == 0.23
    rejected = [SMALL_CHUNKS[9][60]]
    emulator.configure(reject_targets=rejected)
    result = run(
        emulator, tmp_path / "guarded", targets=SMALL_TARGETS, max_cost_usd=estimate, max_active_requests=1
    )
    assert result.spent_usd <= estimate  # never over the limit
    unresolved = result.manifest["unresolved_targets"]
    assert rejected[0] in unresolved and set(unresolved) < set(SMALL_CHUNKS[9])
    assert result.manifest["rejected_targets"] == []
    assert result.lines == _without(clean.lines, unresolved)  # every other row is stored
    assert result.manifest["cost_usd"] == pytest.approx(result.spent_usd, abs=1e-9)


def test_cost_guard_stops_before_exceeding_and_a_retry_pays_nothing_twice(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Follow-ups of incomplete replies do not fit beside the plan: the guard stops the run."""
    clean = run(emulator, tmp_path / "clean", targets=SMALL_TARGETS)
    estimate = estimate_cost_usd(10, 1000)
    emulator.configure(rates={"drop_items": 1.0}, seed=SEED, drop_share=0.2)
    out = tmp_path / "guarded"
    before = emulator.stats()
    with pytest.raises(AirflowFailException, match=r"^Cost guard: a request of \d+ targets \(chunk 1\)"):
        run(emulator, out, targets=SMALL_TARGETS, max_cost_usd=estimate, max_active_requests=1)
    assert spent_since(emulator, before) <= estimate  # never over the limit
    stored = Checkpoint(out / "bulk_pages_summary.jsonl", SMALL_CHUNKS, _options()).load()
    assert sorted(stored) == [0] and stored[0].pending  # stopped inside chunk 1, its rows kept
    assert not (out / "bulk_pages_summary.jsonl").exists()

    emulator.switch_off()
    result = run(emulator, out, targets=SMALL_TARGETS)  # retried with the limit lifted
    assert sorted(result.lines) == sorted(clean.lines)
    assert result.manifest["cost_usd"] == pytest.approx(spent_since(emulator, before), abs=1e-9)  # both tries
    assert result.requests == 10  # the rest of chunk 1, then chunks 2-10: nothing sent twice


def _options() -> dict[str, Any]:
    return {"include_subdomains": True, "rank_scale": None, "tag": None}


# ---------------------------------------------------------------------------------------------
# Client-side limiter
# ---------------------------------------------------------------------------------------------


def _starts(limiter_kwargs: dict[str, Any], n: int) -> list[float]:
    """Start times of ``n`` back-to-back requests through a limiter on a fake clock."""
    now = [0.0]
    limiter = RequestLimiter(
        clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds), **limiter_kwargs
    )
    starts = []
    for _ in range(n):
        limiter.acquire()
        starts.append(now[0])
        limiter.release()
    return starts


def test_limiter_keeps_every_minute_within_budget_and_spreads_it_over_ten_second_parts() -> None:
    starts = _starts({"max_in_flight": 1000, "requests_per_minute": 60}, 300)
    # burst defaults to 60 / 6 = 10 starts per 10 s: ten at once, then ten every 10 s
    assert starts == [10.0 * (i // 10) for i in range(300)]
    assert all(starts[i + 60] - starts[i] >= 60 for i in range(len(starts) - 60))  # <= 60 a minute


def test_limiter_lets_a_short_run_go_at_full_concurrency() -> None:
    # 100 requests (a 100,000-target run) are far below 1800 a minute: no start waits
    assert _starts({"max_in_flight": 1000, "requests_per_minute": 1800}, 300) == [0.0] * 300
    assert _starts({"max_in_flight": 1000, "requests_per_minute": 1800}, 301)[-1] == 10.0


def test_limiter_honours_the_minute_when_the_burst_is_the_whole_budget() -> None:
    starts = _starts({"max_in_flight": 1000, "requests_per_minute": 50, "burst": 50}, 120)
    assert starts == [0.0] * 50 + [60.0] * 50 + [120.0] * 20


def test_limiter_keeps_requests_in_flight_at_most_the_limit() -> None:
    limiter = RequestLimiter(max_in_flight=3, requests_per_minute=None)
    barrier = threading.Barrier(3, timeout=10)
    inside: list[int] = []

    def work() -> None:
        with limiter.request():
            inside.append(limiter.in_flight)
            barrier.wait()  # only passes with three holders: proves three get in, and no more

    threads = [threading.Thread(target=work) for _ in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert limiter.peak_in_flight == 3 and max(inside) == 3 and limiter.started == 9
    assert limiter.in_flight == 0


@pytest.mark.parametrize(("max_in_flight", "refused"), [(3, False), (30, True)])
def test_a_shared_limiter_keeps_the_api_from_answering_40209(
    monkeypatch: pytest.MonkeyPatch, max_in_flight: int, refused: bool
) -> None:
    config = EmulatorConfig(
        login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD, latency_seconds=0.2, max_simultaneous=3
    )
    with EmulatorServer(config) as server:
        monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_LIMITS", conn_json(server.url))
        hook = DataForSeoHook(
            "dataforseo_limits", max_attempts=1, limiter=RequestLimiter(max_in_flight=max_in_flight)
        )
        barrier = threading.Barrier(8, timeout=10)
        errors: list[BaseException] = []

        def post(i: int) -> None:
            barrier.wait()
            try:
                hook.bulk_pages_summary([f"https://site{i}.example.com/"])
            except DataForSeoRateLimitError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert bool(errors) is refused
        assert all(e.status_code == api.TOO_MANY_SIMULTANEOUS_REQUESTS for e in errors)
        assert server.app.state.limits.peak_in_flight == 3
        assert hook.limiter.started == 8


def test_limiter_refuses_bad_limits_by_name() -> None:
    with pytest.raises(ValueError, match="max_in_flight must be an integer of at least 1, got 0"):
        RequestLimiter(max_in_flight=0)
    with pytest.raises(ValueError, match="requests_per_minute must be an integer of at least 1, got -5"):
        RequestLimiter(requests_per_minute=-5)
    with pytest.raises(ValueError, match="requests_per_minute must be an integer of at least 1, got 0"):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], requests_per_minute=0)
    with pytest.raises(ValueError, match="max_cost_usd must be a positive number of USD or None, got -1"):
        BulkPagesSummaryOperator(task_id="x", targets=["a.com"], max_cost_usd=-1)


# ---------------------------------------------------------------------------------------------
# Checkpoint (pure, on local paths)
# ---------------------------------------------------------------------------------------------

SMALL = [["a.com", "b.com"], ["https://c.com/", "d.com"], ["e.com"]]


def _outcome(
    index: int, *, pending: list[str] | None = None, rows: list[dict[str, Any]] | None = None
) -> ChunkOutcome:
    chunk = SMALL[index]
    made = (
        rows
        if rows is not None
        else [{"target": t, "inputs": [t], "task_id": "t", "item": {"url": t}} for t in chunk]
    )
    return ChunkOutcome(
        index=index, targets=len(chunk), rows=made, items=len(made), requests=1, cost_usd=0.02006,
        task_ids=[f"task-{index}"], pending=pending or [],
    )  # fmt: skip


def test_checkpoint_saves_loads_merges_in_plan_order_and_clears(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    checkpoint = Checkpoint(rows_path, SMALL, _options())
    assert checkpoint.load() == {}
    for index in (2, 0, 1):  # completion order differs from plan order
        checkpoint.save(_outcome(index))
    again = Checkpoint(rows_path, SMALL, _options()).load()
    assert sorted(again) == [0, 1, 2]
    assert again[1].resumed and again[1].items == 2 and again[1].cost_usd == 0.02006
    assert again[1].task_ids == ["task-1"] and again[1].rows == []
    checkpoint.merge()
    targets = [json.loads(line)["target"] for line in rows_path.read_text().splitlines()]
    assert targets == ["a.com", "b.com", "https://c.com/", "d.com", "e.com"]
    checkpoint.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


def test_checkpoint_ignores_torn_corrupt_or_foreign_records(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    checkpoint = Checkpoint(rows_path, SMALL, _options())
    for index in range(3):
        checkpoint.save(_outcome(index))
    folder = checkpoint.directory
    (folder / f"{checkpoint.digests[0]}.jsonl").write_text("torn")  # size no longer matches
    (folder / f"{checkpoint.digests[1]}.json").write_text("{not json")
    assert sorted(Checkpoint(rows_path, SMALL, _options()).load()) == [2]
    other = Checkpoint(rows_path, SMALL, {**_options(), "tag": "another run"})  # other options: other keys
    assert other.load() == {}
    with pytest.raises(CheckpointError, match=r"chunks \[1, 2, 3\] have no stored rows"):
        other.merge()


def test_checkpoint_adds_the_rest_of_an_interrupted_chunk_to_its_stored_rows(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    first = Checkpoint(rows_path, SMALL, _options())
    b_row = {"target": "b.com", "inputs": ["b.com"], "task_id": "t1", "item": {"url": "b.com"}}
    first.save(_outcome(0, pending=["a.com"], rows=[b_row]))
    second = Checkpoint(rows_path, SMALL, _options())
    stored = second.load()
    assert stored[0].pending == ["a.com"] and stored[0].items == 1
    a_row = {"target": "a.com", "inputs": ["a.com"], "task_id": "t2", "item": {"url": "a.com"}}
    second.save(ChunkOutcome(index=0, targets=2, rows=[a_row], items=2, requests=2, cost_usd=0.04))
    for index in (1, 2):
        second.save(_outcome(index))
    assert Checkpoint(rows_path, SMALL, _options()).load()[0].pending == []
    second.merge()
    targets = [json.loads(line)["target"] for line in rows_path.read_text().splitlines()]
    assert targets == ["a.com", "b.com", "https://c.com/", "d.com", "e.com"]  # chunk order restored


def test_chunk_digest_depends_on_targets_order_and_options() -> None:
    base = chunk_digest(["a.com", "b.com"], _options())
    assert base == chunk_digest(["a.com", "b.com"], dict(reversed(list(_options().items()))))
    assert base != chunk_digest(["b.com", "a.com"], _options())
    assert base != chunk_digest(["a.com", "b.com"], {**_options(), "include_subdomains": False})
    assert re.fullmatch(r"[0-9a-f]{32}", base)


def test_checkpoint_on_s3_resumes_merges_and_leaves_only_the_rows_object(
    moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import ObjectStoragePath

    from tests.conftest import aws_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_CHECKPOINT_S3", aws_conn_json(moto_s3))
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="checkpoints")
    rows_path = ObjectStoragePath("s3://checkpoint_s3@checkpoints/run/rows.jsonl")
    first = Checkpoint(rows_path, SMALL, _options())
    first.save(_outcome(1))  # a first try finished chunk 2 only
    second = Checkpoint(rows_path, SMALL, _options())
    assert sorted(second.load()) == [1]
    for index in (0, 2):
        second.save(_outcome(index))
    second.merge()
    second.clear()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="checkpoints").get("Contents", [])]
    assert keys == ["run/rows.jsonl"]
    body = s3.get_object(Bucket="checkpoints", Key="run/rows.jsonl")["Body"].read().decode()
    assert [json.loads(line)["target"] for line in body.splitlines()] == [
        "a.com",
        "b.com",
        "https://c.com/",
        "d.com",
        "e.com",
    ]


def test_checkpoint_resumes_only_for_the_run_that_wrote_it(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.jsonl"
    Checkpoint(rows_path, SMALL, _options(), run="dag/fetch/run-1/-1").save(_outcome(1))
    assert sorted(Checkpoint(rows_path, SMALL, _options(), run="dag/fetch/run-1/-1").load()) == [1]
    assert sorted(Checkpoint(rows_path, SMALL, _options()).load()) == [1]  # no run given: any
    # another run writing to the same path starts afresh, and the stale parts are removed
    assert Checkpoint(rows_path, SMALL, _options(), run="dag/fetch/run-2/-1").load() == {}
    assert [p.name for p in (tmp_path / "rows.jsonl.checkpoint").iterdir()] == ["run.json"]  # now run-2's


def test_a_later_run_to_the_same_output_path_never_reuses_an_earlier_runs_chunks(
    emulator: Emulator, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    def execute(run_id: str, **kwargs: Any) -> dict[str, Any]:
        operator = BulkPagesSummaryOperator(
            task_id="fetch",
            targets=SMALL_TARGETS,
            output_path=(tmp_path / "fixed").as_uri() + "/",
            dataforseo_conn_id=CONN_ID,
            max_active_requests=1,
            hook_params=FAST,
            **kwargs,
        )
        ti = SimpleNamespace(dag_id="d", task_id="fetch", run_id=run_id, map_index=-1)
        return operator.execute({"ti": ti})  # type: ignore[arg-type]

    before = emulator.stats()
    emulator.configure(rates={"drop_items": 1.0}, seed=SEED, drop_share=0.2)  # follow-ups in chunk 1 ...
    with pytest.raises(AirflowFailException, match="Cost guard"):
        execute("run-1", max_cost_usd=estimate_cost_usd(10, 1000))  # ... stop it half-way
    stored = Checkpoint(tmp_path / "fixed" / "bulk_pages_summary.jsonl", SMALL_CHUNKS, _options()).load()
    assert sorted(stored) == [0] and stored[0].pending
    first = emulator.stats()["api_requests"] - before["api_requests"]
    emulator.switch_off()
    manifest = execute("run-2")
    # every chunk fetched again by the new run; its manifest counts its own spend only
    assert emulator.stats()["api_requests"] - before["api_requests"] - first == len(SMALL_CHUNKS)
    assert manifest["requests"] == len(SMALL_CHUNKS)
    spent_by_run_2 = spent_since(emulator, before) - stored_cost(stored)
    assert manifest["cost_usd"] == pytest.approx(spent_by_run_2, abs=1e-9)


def stored_cost(stored: dict[int, ChunkOutcome]) -> float:
    return sum(outcome.cost_usd for outcome in stored.values())
