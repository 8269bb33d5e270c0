"""The at-scale pattern on a real Airflow (SQLite, ``dag.test()``) against the emulator:
plan -> ``BulkPagesSummaryOperator.partial(...).expand(chunk_group=...)`` -> merged manifest."""

from __future__ import annotations

import importlib.util
import json
import math
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, task

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.operators.plan import plan_bulk_pages_summary
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, run_dag, s3_client

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db", "dataforseo_conn", "dataforseo_pool")

DAG_FILE = REPO / "example_dags" / "example_dataforseo_at_scale.py"
CAPTURED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def dataforseo_pool(airflow_db: Path) -> str:
    """The pool the at-scale DAG's fetch tasks run in, with the API's 30 simultaneous requests."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        "dataforseo", slots=30, description="DataForSEO requests in flight", include_deferred=False
    )
    return "dataforseo"


def _spent(emulator: Any) -> float:
    reply = requests.get(
        f"{emulator.url}{api.USER_DATA_PATH}", auth=(EMULATOR_LOGIN, EMULATOR_PASSWORD), timeout=5
    ).json()
    money = reply["tasks"][0]["result"][0]["money"]
    return float(money["total"]) - float(money["balance"])


def _states(run: Any) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}


def _example_module() -> Any:
    spec = importlib.util.spec_from_file_location("example_dataforseo_at_scale", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_at_scale_dag_maps_one_task_per_group_and_merges_the_manifests(
    emulator: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the generated targets file lies under the run's output root: the deployment allows it
    monkeypatch.setenv("AIRFLOW__DATAFORSEO__ALLOWED_TARGET_ROOTS", tmp_path.as_uri())
    from airflow.dag_processing.dagbag import DagBag

    module = _example_module()
    domains = [line.split(",", 1)[1] for line in module.DOMAINS_FILE.read_text("utf-8").split()]
    targets = module.build_targets(5_000, domains)
    target_set = normalise_targets(targets)
    chunks = plan_chunks(target_set.targets)
    known = [t for t in target_set.targets if summary_item(t) is not None]
    n_groups = math.ceil(len(chunks) / 2)
    assert (len(target_set), len(chunks), n_groups) == (5_000, 5, 3)  # 250 main domains: bound max(5, 3) = 5

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.get_dag("example_dataforseo_at_scale")
    spent_before = _spent(emulator)
    run = run_dag(
        dag, run_conf={"n_targets": 5_000, "output_root": tmp_path.as_uri(), "requests_per_group": 2}
    )

    states = _states(run)
    assert set(states.values()) == {"success"}
    # issue 14: merge iterated the lazy sequence of mapped results one offset too far, and every
    # run logged "XCom not found ... offset=N" at ERROR though nothing failed
    output = capfd.readouterr()
    log = output.out + output.err
    assert "merge" in log and "parts:" in log  # the run's log was captured
    errors = [line for line in log.splitlines() if "[error" in line or " ERROR " in line]
    assert errors == []
    assert sorted(key for key in states if key[0] == "fetch") == [("fetch", i) for i in range(n_groups)]
    run_root = tmp_path / "example_dataforseo_at_scale" / run.run_id
    merged = json.loads((run_root / "manifest.json").read_text())
    cost = round(len(chunks) * api.COST_PER_REQUEST_USD + len(known) * api.COST_PER_ITEM_USD, 6)
    assert merged == {
        "uri": f"file://{run_root}/manifest.json",
        "parts": n_groups,
        "targets": 5_000,
        "items": len(known),
        "requests": len(chunks),
        "cost_usd": pytest.approx(cost, abs=1e-6),
        "missing_targets": 5_000 - len(known),
        "unmatched_items": 0,
        "rejected_targets": [],
        "unresolved_targets": [],
        "part_uris": [f"file://{run_root}/part-{i}/bulk_pages_summary.jsonl" for i in range(n_groups)],
        "cost_upper_bound_usd": pytest.approx(cost, abs=1e-6),  # no reply lost: the bound is the cost
    }
    assert merged["requests"] == 5 and merged["items"] == len(known) > 4_800
    assert _spent(emulator) - spent_before == pytest.approx(cost, abs=1e-6)  # each request charged once

    # every known target in exactly one part, each part holding exactly its group's targets
    rows_targets: list[str] = []
    for i in range(n_groups):
        group = json.loads((run_root / "groups" / f"group-{i:05d}.json").read_text())
        part = [
            json.loads(line)["target"]
            for line in (run_root / f"part-{i}" / "bulk_pages_summary.jsonl").open()
        ]
        assert set(part) <= {t for chunk in group["chunks"] for t in chunk}
        assert group["chunks"] == chunks[2 * i : 2 * i + 2]
        rows_targets.extend(part)
    assert sorted(rows_targets) == sorted(known)


def test_plain_plan_function_in_a_task_with_inline_groups_keeps_original_inputs(emulator: Any) -> None:
    inputs = ["HTTPS://Example.com", "https://example.com/#top", "www.Wikipedia.org", "wikipedia.org"]
    inputs += [f"https://site{i}.example.net/page" for i in range(30)]

    with DAG("inline_groups", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:

        @task
        def plan() -> list[dict[str, Any]]:
            return plan_bulk_pages_summary(inputs, requests_per_group=1)

        fetch = BulkPagesSummaryOperator.partial(task_id="fetch", pool="dataforseo", pool_slots=5).expand(
            chunk_group=plan()
        )

        @task
        def capture(rows: Any) -> None:
            CAPTURED["inline_groups"] = [row for part in rows for row in part]

        capture(fetch.output)

    run = run_dag(dag)
    assert set(_states(run).values()) == {"success"}
    rows = CAPTURED["inline_groups"]
    by_target = {row["target"]: row for row in rows}
    assert by_target["https://example.com/"]["inputs"] == ["HTTPS://Example.com", "https://example.com/#top"]
    assert by_target["wikipedia.org"]["inputs"] == ["www.Wikipedia.org", "wikipedia.org"]
    expected = {t for t in normalise_targets(inputs).targets if summary_item(t) is not None}
    assert set(by_target) == expected
    assert len(rows) == len(expected)


def test_a_broken_group_fails_the_mapped_task_without_retries_or_spending(
    emulator: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "group-00000.json"
    bad.write_text(json.dumps({"chunks": [[f"site{i}.example{i}.com" for i in range(101)]]}))
    with DAG("broken_group", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        BulkPagesSummaryOperator.partial(task_id="fetch", retries=3).expand(
            chunk_group=[{"uri": bad.as_uri()}]
        )
    spent = _spent(emulator)
    run = run_dag(dag)
    [ti] = [ti for ti in run.get_task_instances() if ti.task_id == "fetch"]
    assert str(ti.state) == "failed"
    assert ti.try_number == 1
    assert _spent(emulator) == spent


def test_exactly_one_of_targets_and_chunk_group() -> None:
    with pytest.raises(ValueError, match="give exactly one of targets and chunk_group"):
        BulkPagesSummaryOperator(task_id="neither")
    with pytest.raises(ValueError, match="give exactly one of targets and chunk_group"):
        BulkPagesSummaryOperator(task_id="both", targets=["a.com"], chunk_group={"uri": "file:///g.json"})


def test_at_scale_dag_runs_the_same_with_s3_output(
    emulator: Any, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Targets file, groups, parts and merged manifest all in S3 (moto), as on Celery/Kubernetes."""
    pytest.importorskip(
        "s3fs", reason="the [s3] extra (apache-airflow-providers-amazon[s3fs]) is not installed"
    )
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import aws_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_SCALE_S3", aws_conn_json(moto_s3))
    monkeypatch.setenv("AIRFLOW__DATAFORSEO__ALLOWED_TARGET_ROOTS", "s3://scale_s3@scale/out/")
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="scale")
    dag = DagBag(dag_folder=str(DAG_FILE)).get_dag("example_dataforseo_at_scale")
    run = run_dag(
        dag, run_conf={"n_targets": 2_000, "output_root": "s3://scale_s3@scale/out", "requests_per_group": 1}
    )

    assert set(_states(run).values()) == {"success"}
    prefix = f"out/example_dataforseo_at_scale/{run.run_id}/"
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket="scale", Prefix=prefix)["Contents"])
    assert [k for k in keys if "/groups/" in k] == [f"{prefix}groups/group-0000{i}.json" for i in range(2)]
    assert (
        f"{prefix}part-0/bulk_pages_summary.jsonl" in keys
        and f"{prefix}part-1/bulk_pages_summary.jsonl" in keys
    )
    merged = json.loads(s3.get_object(Bucket="scale", Key=f"{prefix}manifest.json")["Body"].read())
    module = _example_module()
    domains = [line.split(",", 1)[1] for line in module.DOMAINS_FILE.read_text("utf-8").split()]
    known = [t for t in module.build_targets(2_000, domains) if summary_item(t) is not None]
    assert (merged["parts"], merged["targets"], merged["requests"], merged["items"]) == (
        2,
        2_000,
        2,
        len(known),
    )
    assert merged["uri"] == f"s3://scale_s3@scale/{prefix}manifest.json"
    rows = [
        json.loads(line)["target"]
        for i in range(2)
        for line in s3.get_object(Bucket="scale", Key=f"{prefix}part-{i}/bulk_pages_summary.jsonl")["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    assert sorted(rows) == sorted(known)
