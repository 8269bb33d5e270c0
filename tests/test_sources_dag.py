"""Target sources through a real Airflow (``dag.test()``, SQLite) against the emulator.

Issue 11: a mapped task's output (``LazyXComSequence``) as targets, in the operator and the
planner; the manifest naming the missing targets as written. Issue 12: files named by a run's
params read only under the allowed roots; a folder or a missing file fails at once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests
from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_dataforseo import api
from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.fetch import FetchSummary
from airflow_provider_dataforseo.operators.bulk_pages_summary import (
    MAX_LISTED_MISSING,
    BulkPagesSummaryOperator,
    missing_listing,
)
from airflow_provider_dataforseo.operators.plan import BulkPagesSummaryPlanOperator
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, REPO, run_dag, s3_client

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("airflow_db", "dataforseo_conn")

START = pendulum.datetime(2026, 1, 1, tz="UTC")
CAPTURED: dict[str, Any] = {}
PAGES = ["HTTPS://Example.com", "wikipedia.org", "https://docs.python.org/3/"]


def _balance(emulator: Any) -> float:
    reply = requests.get(
        f"{emulator.url}{api.USER_DATA_PATH}", auth=(EMULATOR_LOGIN, EMULATOR_PASSWORD), timeout=5
    ).json()
    return float(reply["tasks"][0]["result"][0]["money"]["balance"])


def _ti(run: Any, task_id: str) -> Any:
    return next(ti for ti in run.get_task_instances() if ti.task_id == task_id)


def test_a_mapped_task_s_output_is_targets_for_the_operator_and_the_planner() -> None:
    with DAG("lazy_targets", schedule=None, start_date=START, catchup=False) as dag:

        @task
        def one_target(page: str) -> str:
            return page

        made = one_target.expand(page=PAGES)  # its output is a LazyXComSequence downstream

        @task
        def kind(value: Any) -> None:
            CAPTURED["kind"] = type(value).__name__

        kind(made)
        fetch = BulkPagesSummaryOperator(task_id="fetch", targets=made)
        plan = BulkPagesSummaryPlanOperator(task_id="plan", targets=made)

        @task
        def capture(rows: Any, groups: Any) -> None:
            CAPTURED["rows"], CAPTURED["groups"] = rows, groups

        capture(fetch.output, plan.output)
    run = run_dag(dag)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["fetch"] == states["plan"] == "success", states
    assert CAPTURED["kind"] == "LazyXComSequence"
    wanted = normalise_targets(PAGES).targets
    assert {row["target"] for row in CAPTURED["rows"]} == {t for t in wanted if summary_item(t) is not None}
    by_target = {row["target"]: row for row in CAPTURED["rows"]}
    assert by_target["https://example.com/"]["inputs"] == ["HTTPS://Example.com"]
    (group,) = CAPTURED["groups"]
    assert group["chunks"] == [wanted]


def _params_dag(dag_id: str, roots: list[str] | None, **kwargs: Any) -> DAG:
    with DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"targets": Param("", type="string")},
    ) as dag:
        BulkPagesSummaryOperator(
            task_id="fetch",
            targets="{{ params.targets }}",
            allowed_target_roots=roots,
            retries=2,
            **kwargs,
        )
    return dag


def test_a_file_named_by_params_is_read_only_under_the_allowed_roots(emulator: Any, tmp_path: Path) -> None:
    lists = tmp_path / "SEO lists"
    lists.mkdir()
    listing = lists / "targets.csv"
    listing.write_text('Top pages,Clicks\nhttps://example.com/,"1,200"\n')
    balance = _balance(emulator)
    # no roots set: a file named by a run's params is refused before it is opened
    run = run_dag(_params_dag("params_no_roots", None), run_conf={"targets": "file:///etc/passwd"})
    ti = _ti(run, "fetch")
    assert (str(ti.state), ti.try_number) == ("failed", 1)
    # roots set: outside them refused; inside (a path with a space, as Path.as_uri() writes it) read
    dag = _params_dag("params_roots", [lists.as_uri()])
    run = run_dag(dag, run_conf={"targets": "file:///etc/passwd"})
    assert (str(_ti(run, "fetch").state), _ti(run, "fetch").try_number) == ("failed", 1)
    assert _balance(emulator) == balance
    run = run_dag(dag, run_conf={"targets": listing.as_uri()})
    assert str(_ti(run, "fetch").state) == "success"
    assert _balance(emulator) < balance


def test_a_folder_or_a_missing_targets_file_fails_at_once(emulator: Any, tmp_path: Path) -> None:
    balance = _balance(emulator)
    for dag_id, target in (("targets_folder", tmp_path), ("targets_missing", tmp_path / "nope.txt")):
        with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
            BulkPagesSummaryOperator(task_id="fetch", targets=target.as_uri(), retries=2)
        run = run_dag(dag)
        ti = _ti(run, "fetch")
        assert (str(ti.state), ti.try_number) == ("failed", 1), dag_id
    assert _balance(emulator) == balance


def test_the_manifest_names_missing_targets_as_written(tmp_path: Path) -> None:
    missing = [t for t in (f"Unknown{i}.Example.com" for i in range(400)) if summary_item(t.lower()) is None][
        :3
    ]
    assert len(missing) == 3
    out = tmp_path / "out"
    with DAG("missing_listed", schedule=None, start_date=START, catchup=False) as dag:
        fetch = BulkPagesSummaryOperator(
            task_id="fetch", targets=["example.com", *missing], output_path=out.as_uri() + "/"
        )

        @task
        def capture(manifest: Any) -> None:
            CAPTURED["manifest"] = manifest

        capture(fetch.output)
    run = run_dag(dag)
    assert str(_ti(run, "fetch").state) == "success"
    manifest = CAPTURED["manifest"]
    assert manifest["missing_targets"] == 3
    assert manifest["missing_target_list"] == missing  # the user's spelling, not the normal form
    assert manifest["missing_targets_uri"] is None
    assert json.loads((out / "manifest.json").read_text())["missing_target_list"] == missing


def test_more_missing_targets_than_the_limit_go_to_a_file_beside_the_manifest(tmp_path: Path) -> None:
    inputs = [f"Site{i}.Example.org" for i in range(150)]
    target_set = normalise_targets(inputs)
    summary = FetchSummary(targets=150, planned_requests=1, missing_targets=list(target_set.targets))
    listing = missing_listing(summary, target_set, ObjectStoragePath((tmp_path / "manifest.json").as_uri()))
    assert listing["missing_target_list"] == inputs[:MAX_LISTED_MISSING]
    assert listing["missing_targets_uri"].endswith("/missing_targets.txt")
    assert (tmp_path / "missing_targets.txt").read_text().splitlines() == inputs
    rows = ObjectStoragePath((tmp_path / "rows.jsonl").as_uri())
    assert missing_listing(summary, target_set, rows)["missing_targets_uri"].endswith(
        "/rows.missing_targets.txt"
    )


def test_the_example_dags_set_allowed_roots() -> None:
    for name in ("example_dataforseo_bulk_pages_summary.py", "example_dataforseo_at_scale.py"):
        assert "allowed_target_roots" in (REPO / "example_dags" / name).read_text(), name


def test_exports_and_sitemaps_in_s3_are_read_under_their_root(
    moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("s3fs", reason="the [s3] extra is not installed")

    from airflow_provider_dataforseo.sources import TargetSourceError
    from airflow_provider_dataforseo.targets_io import read_targets_streaming
    from tests.conftest import aws_conn_json

    monkeypatch.setenv("AIRFLOW_CONN_SOURCES_S3", aws_conn_json(moto_s3))
    s3 = s3_client(moto_s3)
    s3.create_bucket(Bucket="seo")
    fixtures = REPO / "tests" / "fixtures" / "targets"
    for name in ("ahrefs_backlinks_utf16le.tsv", "sitemap-posts.xml.gz", "excel_cp1252.csv"):
        s3.put_object(Bucket="seo", Key=f"lists/{name}", Body=(fixtures / name).read_bytes())
    s3.put_object(Bucket="seo", Key="other/secret.txt", Body=b"a.com\n")
    root = "s3://sources_s3@seo/lists/"
    for name in ("ahrefs_backlinks_utf16le.tsv", "sitemap-posts.xml.gz", "excel_cp1252.csv"):
        got = read_targets_streaming(root + name, allowed_roots=[root], trusted=False).targets
        expected = (fixtures / f"{name}.expected").read_text(encoding="utf-8").splitlines()
        assert got == normalise_targets(expected).targets, name
    with pytest.raises(TargetSourceError, match="outside the allowed roots"):
        read_targets_streaming("s3://sources_s3@seo/other/secret.txt", allowed_roots=[root], trusted=False)
    with pytest.raises(TargetSourceError, match="does not exist"):
        read_targets_streaming(root + "nope.csv", allowed_roots=[root], trusted=False)
    with pytest.raises(TargetSourceError, match="a folder"):
        read_targets_streaming(
            "s3://sources_s3@seo/lists", allowed_roots=["s3://sources_s3@seo/"], trusted=False
        )
