"""Output to and input from S3 through ObjectStoragePath, against moto's S3 server on loopback.

``s3://<conn_id>@<bucket>/<key>`` needs the ``[s3]`` extra (``apache-airflow-providers-amazon[s3fs]``).
The ``moto_s3`` fixture starts moto's server on 127.0.0.1 and a free port; the ``aws`` connection
points at it with ``endpoint_url``, exactly as a user points one at MinIO or another S3-compatible
store.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, task

from airflow_provider_dataforseo.chunks import plan_chunks
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO, aws_conn_json, run_dag, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytest.importorskip("s3fs", reason="the [s3] extra (apache-airflow-providers-amazon[s3fs]) is not installed")
pytestmark = pytest.mark.usefixtures("airflow_db", "dataforseo_conn")

CONN_ID = "moto_s3"
CAPTURED: dict[str, Any] = {}
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@pytest.fixture
def s3(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> S3Client:
    """A boto3 client of the moto server, and ``AIRFLOW_CONN_MOTO_S3`` pointing Airflow at it."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", aws_conn_json(moto_s3))
    return s3_client(moto_s3)


def _bucket(s3: S3Client, name: str, *, versioned: bool = False) -> str:
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def _rows(s3: S3Client, bucket: str, key: str, version: str | None = None) -> list[dict[str, Any]]:
    extra = {"VersionId": version} if version else {}
    body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read().decode("utf-8")
    return [json.loads(line) for line in body.splitlines()]


def _dag(dag_id: str, **operator_kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        fetch = BulkPagesSummaryOperator(task_id="fetch", **operator_kwargs)

        @task
        def capture(value: Any) -> None:
            CAPTURED[dag_id] = value

        capture(fetch.output)
    return dag


def _ti(run: Any, task_id: str = "fetch") -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == task_id)


def _known(targets: list[str]) -> list[str]:
    return [t for t in normalise_targets(targets).targets if summary_item(t) is not None]


def test_rows_and_manifest_land_in_s3(s3: S3Client) -> None:
    bucket = _bucket(s3, "backlinks-out")
    targets = ["https://example.com/", "example.org", "wikipedia.org", "https://docs.python.org/3/"]
    run = run_dag(
        _dag("s3_rows", targets=targets, output_path=f"s3://{CONN_ID}@{bucket}/runs/{{{{ run_id }}}}/")
    )
    assert str(_ti(run).state) == "success"
    manifest = CAPTURED["s3_rows"]
    key = f"runs/{run.run_id}/bulk_pages_summary.jsonl"
    known = _known(targets)
    expected = {
        "uri": f"s3://{CONN_ID}@{bucket}/{key}",
        "targets": 4,
        "items": len(known),
        "requests": 1,
        "cost_usd": pytest.approx(0.02 + len(known) * 0.00003, abs=1e-9),
        "missing_targets": 4 - len(known),
        "unmatched_items": 0,
    }
    assert {k: manifest[k] for k in expected} == expected
    rows = _rows(s3, bucket, key)
    assert [r["target"] for r in rows] == known
    for row in rows:
        assert row["item"] == summary_item(row["target"], include_subdomains=True)
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/{run.run_id}/manifest.json")["Body"].read())
    assert stored == {**manifest, "cost_usd": stored["cost_usd"]}
    assert stored["cost_usd"] == pytest.approx(manifest["cost_usd"], abs=1e-9)


def test_a_task_retry_overwrites_the_s3_object_never_duplicates(s3: S3Client, emulator: Any) -> None:
    """Attempt 1 gets one request through, then fails (HTTP 500); attempt 2 completes the object.

    The bucket is versioned, so every object the attempts wrote can be read back: none holds a
    row twice, and the final one holds every row exactly once.
    """
    bucket = _bucket(s3, "backlinks-retry", versioned=True)
    targets = [f"retry-domain-{i}.com" for i in range(150)]  # 150 main domains -> 2 requests
    assert len(plan_chunks(normalise_targets(targets).targets)) == 2
    requests.post(f"{emulator.url}/_emulator/faults", json={"faults": [{"http_status": 500}]}, timeout=5)
    dag = _dag(
        "s3_retry",
        targets=targets,
        output_path=f"s3://{CONN_ID}@{bucket}/retry/rows.jsonl",
        max_active_requests=2,
        hook_params={"max_attempts": 1},  # the 500 fails the attempt instead of being retried inside
        retries=1,
        retry_delay=timedelta(0),
    )
    run = run_dag(dag)
    ti = _ti(run)
    assert str(ti.state) == "success"
    assert ti.try_number == 2

    versions = s3.list_object_versions(Bucket=bucket, Prefix="retry/rows.jsonl")["Versions"]
    rows_versions = [v for v in versions if v["Key"] == "retry/rows.jsonl"]
    assert rows_versions
    for version in rows_versions:
        written = [r["target"] for r in _rows(s3, bucket, "retry/rows.jsonl", version["VersionId"])]
        assert len(written) == len(set(written))  # no attempt ever wrote a row twice
    final = [r["target"] for r in _rows(s3, bucket, "retry/rows.jsonl")]
    assert sorted(final) == sorted(_known(targets))  # every row ...
    assert len(final) == len(set(final))  # ... exactly once
    assert CAPTURED["s3_retry"]["items"] == len(final)


def test_targets_file_is_read_from_s3(s3: S3Client) -> None:
    bucket = _bucket(s3, "backlinks-in")
    s3.put_object(
        Bucket=bucket,
        Key="lists/targets.csv",
        Body=b"url\n# watched pages\nhttps://example.com/a\n\nexample.org\nhttps://example.com/a#dup\n",
    )
    run = run_dag(_dag("s3_targets", targets=f"s3://{CONN_ID}@{bucket}/lists/targets.csv"))
    assert str(_ti(run).state) == "success"
    rows = CAPTURED["s3_targets"]
    assert [r["target"] for r in rows] == _known(["https://example.com/a", "example.org"])
    by_target = {r["target"]: r for r in rows}
    if "https://example.com/a" in by_target:
        assert by_target["https://example.com/a"]["inputs"] == [
            "https://example.com/a",
            "https://example.com/a#dup",
        ]


def test_example_dag_writes_to_s3_and_its_report_reads_back(s3: S3Client) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bucket = _bucket(s3, "example-out")
    dag = DagBag(dag_folder=str(REPO / "example_dags")).get_dag("example_dataforseo_bulk_pages_summary")
    targets = "example.com, https://example.org/, wikipedia.org"
    run = run_dag(dag, run_conf={"targets": targets, "output_root": f"s3://{CONN_ID}@{bucket}/daily"})
    assert str(_ti(run, "fetch_bulk_pages_summary").state) == "success"
    report = _ti(run, "report")
    assert str(report.state) == "success"
    key = f"daily/example_dataforseo_bulk_pages_summary/{run.run_id}/bulk_pages_summary.jsonl"
    rows = _rows(s3, bucket, key)
    known = _known(["example.com", "https://example.org/", "wikipedia.org"])
    assert sorted(r["target"] for r in rows) == sorted(known)
    assert report.xcom_pull(task_ids="report")["uri"] == f"s3://{CONN_ID}@{bucket}/{key}"
