"""The example DAG's ``params``: what the UI's trigger form shows, what it refuses, what a run does.

The trigger form is built from ``GET /api/v2/dags/{dag_id}/details`` (``params``: value, title,
description and JSON schema of each) and posts ``POST /api/v2/dags/{dag_id}/dagRuns`` with the
user's ``conf``; both are asked here of Airflow's own REST API app, in-process. A run triggered
with custom params is then executed with ``dag.test(run_conf=...)`` against the emulator.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pendulum
import pytest
import requests

from airflow_provider_dataforseo.emulator.data import summary_item
from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator, as_bool
from airflow_provider_dataforseo.targets import normalise_targets
from tests.conftest import REPO, run_dag

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.testclient import TestClient

    from airflow_provider_dataforseo.emulator import EmulatorServer

DAG_ID = "example_dataforseo_bulk_pages_summary"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _api_requests(emulator: EmulatorServer) -> int:
    return int(requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["api_requests"])


def _example_dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "example_dags")).get_dag(DAG_ID)


def _register(dag: Any) -> None:
    """Write the DAG to the metadata database, as the DAG processor does."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def test_trigger_form_shows_typed_described_params(airflow_api: TestClient) -> None:
    _register(_example_dag())
    reply = airflow_api.get(f"/api/v2/dags/{DAG_ID}/details")
    assert reply.status_code == 200, reply.text
    params = reply.json()["params"]
    assert list(params) == ["targets", "include_subdomains", "output_root"]
    assert params["targets"]["schema"]["type"] == "string"
    assert params["targets"]["schema"]["title"] == "Targets"
    assert params["targets"]["value"] == (REPO / "example_dags/data/top_sites_targets.txt").as_uri()
    assert "https:// URLs" in params["targets"]["description"]
    assert params["include_subdomains"]["schema"] == {"type": "boolean", "title": "Include subdomains"}
    assert params["include_subdomains"]["value"] is True
    assert params["include_subdomains"]["description"] == (
        "Count backlinks pointing to the targets' subdomains too (the API's default)."
    )
    assert params["output_root"]["schema"]["type"] == "string"
    assert params["output_root"]["description"] == (
        "ObjectStoragePath URI under which <dag_id>/<run_id>/ is written."
    )


def test_trigger_form_refuses_a_param_of_the_wrong_type(airflow_api: TestClient) -> None:
    _register(_example_dag())
    reply = airflow_api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"include_subdomains": "sometimes"}},
    )
    assert reply.status_code == 400, reply.text
    assert "include_subdomains" in reply.text

    reply = airflow_api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": {"targets": "example.com", "include_subdomains": False}},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["conf"] == {"targets": "example.com", "include_subdomains": False}


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_a_run_triggered_with_custom_params_uses_them(tmp_path: Path) -> None:
    targets = ["https://example.com/", "wikipedia.org", "https://docs.python.org/3/", "Example.org"]
    conf = {
        "targets": "\n".join(targets),  # what a user pastes into the form's text field
        "include_subdomains": False,
        "output_root": (tmp_path / "custom").as_uri(),
    }
    run = run_dag(_example_dag(), run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"fetch_bulk_pages_summary": "success", "report": "success"}

    rows_file = tmp_path / "custom" / DAG_ID / run.run_id / "bulk_pages_summary.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    expected = {
        t: summary_item(t, include_subdomains=False)
        for t in normalise_targets(targets).targets
        if summary_item(t, include_subdomains=False) is not None
    }
    assert {row["target"]: row["item"] for row in rows} == expected
    assert expected != {t: summary_item(t, include_subdomains=True) for t in expected}  # the flag matters
    target_set = normalise_targets(targets)
    assert {row["target"]: row["inputs"] for row in rows} == {t: target_set.inputs_of(t) for t in expected}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("True", True), (" false ", False), ("1", True), ("0", False), (1, True)],
)
def test_include_subdomains_as_a_template_renders_it(value: object, expected: bool) -> None:
    assert as_bool(value, "include_subdomains") is expected


@pytest.mark.usefixtures("airflow_db", "dataforseo_conn")
def test_a_bad_include_subdomains_fails_before_any_request(emulator: EmulatorServer) -> None:
    from airflow.sdk import DAG

    with pytest.raises(ValueError, match=r"include_subdomains must be true or false, got 'sometimes'"):
        as_bool("sometimes", "include_subdomains")
    requests_before = _api_requests(emulator)
    with DAG("bad_include_subdomains", schedule=None, start_date=START) as dag:
        BulkPagesSummaryOperator(task_id="fetch", targets=["example.com"], include_subdomains="sometimes")
    run = run_dag(dag)
    ti = next(ti for ti in run.get_task_instances() if ti.task_id == "fetch")
    assert str(ti.state) == "failed"
    assert _api_requests(emulator) == requests_before  # nothing was sent, nothing spent
