"""Assets and OpenLineage: the fetch's output as an Asset outlet, and the lineage it reports.

- The example fetch DAG declares its operator's output as ``Asset("dataforseo_bulk_pages_summary")``;
  a successful run records an asset event carrying the manifest, the scheduler's own query then
  finds the consumer DAG due, and the consumer reads the rows the event points to.
- ``get_openlineage_facets_on_complete`` is checked through the OpenLineage provider's own
  extractor, and end to end: ``airflow dags test`` with the OpenLineage listener on and a file
  transport, reading the emitted events back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.lineage import DatasetName, endpoint_dataset, storage_dataset
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO, run_dag

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_dataforseo.emulator import EmulatorServer

PRODUCER = "example_dataforseo_bulk_pages_summary"
CONSUMER = "example_dataforseo_asset_consumer"
ASSET_NAME = "dataforseo_bulk_pages_summary"
TARGETS = ["https://example.com/", "example.org", "wikipedia.org", "https://docs.python.org/3/"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "s3://aws_default@my-bucket/backlinks/run 1/rows.jsonl",
            ("s3://my-bucket", "backlinks/run 1/rows.jsonl"),
        ),
        ("s3://Bucket.Name/k", ("s3://Bucket.Name", "k")),
        ("s3a://bucket/", ("s3://bucket", "/")),
        ("gs://conn@bucket/a/b.jsonl", ("gs://bucket", "a/b.jsonl")),
        ("file:///tmp/dataforseo/rows.jsonl", ("file", "/tmp/dataforseo/rows.jsonl")),
        ("/tmp/dataforseo/rows.jsonl", ("file", "/tmp/dataforseo/rows.jsonl")),
        ("file://nas01/share/rows.jsonl", ("file://nas01", "/share/rows.jsonl")),
        ("hdfs://namenode:8020/data/rows.jsonl", ("hdfs://namenode:8020", "/data/rows.jsonl")),
    ],
)
def test_storage_dataset_follows_openlineage_naming(uri: str, expected: tuple[str, str]) -> None:
    assert storage_dataset(uri) == DatasetName(*expected)


@pytest.mark.parametrize("uri", ["", "   ", "s3:///key-without-bucket"])
def test_storage_dataset_refuses_uris_naming_nothing(uri: str) -> None:
    with pytest.raises(ValueError, match=r"names no|empty URI"):
        storage_dataset(uri)


def test_endpoint_dataset_drops_credentials_and_trailing_slash() -> None:
    assert endpoint_dataset(
        "https://user:pw@api.dataforseo.com/", api.BULK_PAGES_SUMMARY_PATH
    ) == DatasetName("https://api.dataforseo.com", "/v3/backlinks/bulk_pages_summary/live")
    assert endpoint_dataset("http://127.0.0.1:8765", "v3/x") == DatasetName("http://127.0.0.1:8765", "/v3/x")


def _known(targets: list[str], include_subdomains: bool = True) -> list[str]:
    return [
        t
        for t in normalise_targets(targets).targets
        if summary_item(t, include_subdomains=include_subdomains) is not None
    ]


@pytest.mark.usefixtures("airflow_db")
def test_openlineage_extractor_reports_endpoint_in_and_rows_file_out(
    emulator: EmulatorServer, dataforseo_conn: str, tmp_path: Path
) -> None:
    pytest.importorskip("airflow.providers.openlineage", reason="the [openlineage] extra is not installed")
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    operator = BulkPagesSummaryOperator(
        task_id="fetch", targets=TARGETS, output_path=(tmp_path / "out").as_uri() + "/"
    )
    manifest = operator.execute({})  # type: ignore[arg-type]  # no outlets: the context is not used
    rows_file = tmp_path / "out" / "bulk_pages_summary.jsonl"
    assert manifest["uri"] == rows_file.as_uri()

    # The OpenLineage provider picks our method (DefaultExtractor) and calls it on completion.
    extractor = ExtractorManager().get_extractor_class(operator)
    assert extractor is DefaultExtractor
    lineage = extractor(operator).extract_on_complete(None)  # type: ignore[arg-type]
    assert lineage is not None
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (emulator.url, "/v3/backlinks/bulk_pages_summary/live")
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(rows_file))]
    stats = lineage.outputs[0].outputFacets["outputStatistics"]
    assert stats.rowCount == len(_known(TARGETS)) == manifest["items"]


def test_lineage_without_output_path_has_no_output_dataset(
    emulator: EmulatorServer, dataforseo_conn: str
) -> None:
    pytest.importorskip("airflow.providers.openlineage", reason="the [openlineage] extra is not installed")
    operator = BulkPagesSummaryOperator(task_id="fetch", targets=["example.org"])
    rows = operator.execute({})  # type: ignore[arg-type]
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        (emulator.url, "/v3/backlinks/bulk_pages_summary/live")
    ]
    assert lineage.outputs == []
    assert len(rows) == len(_known(["example.org"]))


def _asset_events(session: Any) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
    return list(session.scalars(query.where(AssetModel.name == ASSET_NAME).order_by(AssetEvent.id)))


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_asset_outlet_schedules_the_consumer_which_reads_the_fresh_rows(tmp_path: Path) -> None:
    from airflow import settings
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy.orm import Session

    bag = DagBag(dag_folder=str(REPO / "example_dags"))
    producer, consumer = bag.get_dag(PRODUCER), bag.get_dag(CONSUMER)
    assert [o.name for o in producer.get_task("fetch_bulk_pages_summary").outlets] == [ASSET_NAME]
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)  # what the DAG processor does: both DAGs are known
    with create_session() as session:
        before = len(_asset_events(session))
        session.get(DagModel, CONSUMER).is_paused = False  # as a user switches it on in the UI

    out = tmp_path / "out"
    run = run_dag(producer, run_conf={"targets": ", ".join(TARGETS), "output_root": out.as_uri()})
    fetch = next(ti for ti in run.get_task_instances() if ti.task_id == "fetch_bulk_pages_summary")
    assert str(fetch.state) == "success"
    manifest = fetch.xcom_pull(task_ids="fetch_bulk_pages_summary")

    with create_session() as session:
        events = _asset_events(session)
        assert len(events) == before + 1
        assert events[-1].extra == manifest  # the event carries the manifest: uri, counts, cost
        assert events[-1].source_dag_id == PRODUCER
    run = run_dag(consumer)  # manually: it reads the latest event of its inlet, the same manifest
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "report_broken_backlinks")
    assert str(ti.state) == "success"
    report = ti.xcom_pull(task_ids="report_broken_backlinks")
    known = _known(TARGETS)
    items = [summary_item(t, include_subdomains=True) for t in known]
    broken = sorted(
        ((i["broken_backlinks"], i["url"]) for i in items if i and (i["broken_backlinks"] or 0) > 0),
        key=lambda pair: (-pair[0], pair[1]),
    )
    assert report == {
        "uri": manifest["uri"],
        "rows": len(known),
        "pages_with_broken_backlinks": len(broken),
        "top_broken": [list(pair) for pair in broken],
    }
    # The scheduler's own query: the consumer is due because of the fresh asset event. (Its own
    # session, rolled back: the query locks rows as the scheduler's transaction would.)
    with Session(bind=settings.engine) as scheduler_session:
        _, triggered = DagModel.dags_needing_dagruns(scheduler_session)
        scheduler_session.rollback()
    assert CONSUMER in triggered


#: What ``airflow db reset`` + ``airflow dags test DAG -c CONF`` do, in one interpreter (half the
#: start-up time of two CLI calls).
_RUN_DAG_WITH_OPENLINEAGE = """
import json, sys
from airflow.utils import db
from airflow.dag_processing.dagbag import DagBag
db.resetdb()
dag = DagBag().get_dag(sys.argv[1])
run = dag.test(run_conf=json.loads(sys.argv[2]))
print(f"state={run.state}")
"""


def test_airflow_emits_openlineage_events_for_a_real_run(
    emulator: EmulatorServer, dataforseo_conn: str, tmp_path: Path
) -> None:
    """``airflow dags test`` with the OpenLineage listener on (file transport) in a subprocess.

    A subprocess, because the OpenLineage plugin decides at load time whether it is enabled.
    """
    pytest.importorskip("airflow.providers.openlineage", reason="the [openlineage] extra is not installed")
    events_file = tmp_path / "openlineage.jsonl"
    out = tmp_path / "out"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "dataforseo-tests",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),  # its own SQLite database, migrated below
    }
    conf = {"targets": ", ".join(TARGETS), "output_root": out.as_uri()}
    done = subprocess.run(
        [sys.executable, "-c", _RUN_DAG_WITH_OPENLINEAGE, PRODUCER, json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("state=success"), done.stdout[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = [
        e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"{PRODUCER}.fetch_bulk_pages_summary"
    ]
    assert len(complete) == 1
    event = complete[0]
    assert event["job"]["namespace"] == "dataforseo-tests"
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
        (emulator.url, "/v3/backlinks/bulk_pages_summary/live")
    ]
    rows_files = list(out.rglob("bulk_pages_summary.jsonl"))
    assert len(rows_files) == 1
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [("file", str(rows_files[0]))]
    assert event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == len(_known(TARGETS))
