"""Every example DAG is fit for the UI and for production: its trigger form works with the defaults,
its params' titles are unambiguous, and the tasks that call the API share one pool and retry after a
crashed worker.

The trigger form is built from ``GET /api/v2/dags/{dag_id}/details``: a param whose default is empty
(``None`` or ``""``) and whose schema does not allow ``null`` is shown as required, and the form's
Trigger button stays disabled until it is filled (issue 14: the at-scale DAG's "Targets file").
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

EXAMPLES = REPO / "example_dags"
#: The example DAGs and the tasks of each that send DataForSEO requests from a worker.
API_TASKS = {
    "example_dataforseo_bulk_pages_summary": ["fetch_bulk_pages_summary"],
    "example_dataforseo_at_scale": ["fetch"],
    "example_dataforseo_backlinks_alert": ["watch_backlinks"],
}
POOL = "dataforseo"


def _bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    return bag


def _register(bag: Any) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)


def _allows_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind)


@pytest.mark.usefixtures("airflow_db")
def test_every_example_dag_triggers_from_the_form_with_its_defaults(airflow_api: TestClient) -> None:
    bag = _bag()
    _register(bag)
    assert set(API_TASKS) <= set(bag.dag_ids)
    for dag_id in sorted(bag.dag_ids):
        reply = airflow_api.get(f"/api/v2/dags/{dag_id}/details")
        assert reply.status_code == 200, reply.text
        for name, param in reply.json()["params"].items():
            schema = param.get("schema") or {}
            if param.get("value") in (None, ""):
                # the form treats an empty value as missing unless the schema allows null
                assert _allows_null(schema), f"{dag_id}: param {name!r} is empty and required"
        # what the form posts with the defaults untouched: an empty conf, accepted and valid
        created = airflow_api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        assert created.status_code == 200, (dag_id, created.text)
        assert created.json()["state"] == "queued"


def test_param_titles_are_unambiguous() -> None:
    bag = _bag()
    titles: dict[str, list[str]] = {}
    for dag_id in bag.dag_ids:
        for name, param in bag.get_dag(dag_id).params.items():
            title = param.schema.get("title") or name
            titles.setdefault(title, []).append(f"{dag_id}.{name}")
    # one title, one meaning: the same title is only used for the same param name
    for title, owners in titles.items():
        names = {owner.split(".", 1)[1] for owner in owners}
        assert len(names) == 1, f"title {title!r} names different params: {owners}"
    at_scale = bag.get_dag("example_dataforseo_at_scale").params
    assert at_scale.get_param("n_targets").schema["title"] == "Number of targets to generate"
    assert at_scale.get_param("targets_uri").value is None


def test_at_scale_defaults_validate_and_targets_uri_may_be_empty_or_a_uri() -> None:
    from airflow.sdk.definitions.param import ParamsDict

    params = _bag().get_dag("example_dataforseo_at_scale").params
    assert params.validate()["targets_uri"] is None
    for value in (None, "file:///tmp/targets.txt"):
        copy = ParamsDict(params)
        copy["targets_uri"] = value
        assert copy.validate()["targets_uri"] == value


def test_api_tasks_share_the_pool_and_retry_after_a_crashed_worker() -> None:
    bag = _bag()
    for dag_id, task_ids in API_TASKS.items():
        dag = bag.get_dag(dag_id)
        for task_id in task_ids:
            task = dag.get_task(task_id)
            assert task.pool == POOL, (dag_id, task_id, task.pool)
            # a task never asks for more slots than the pool's 30 (the API's simultaneous limit)
            assert 1 <= task.pool_slots <= 30
            assert task.retries >= 2, (dag_id, task_id)
            assert timedelta(seconds=30) <= task.retry_delay <= timedelta(minutes=10), (dag_id, task_id)


def test_every_example_task_retries_after_a_crashed_worker() -> None:
    """A task of any kind on a worker that dies (issue 14: ``report`` on a SIGKILLed Celery worker
    failed its run) is retried once the scheduler finds it."""
    bag = _bag()
    for dag_id in bag.dag_ids:
        for task in bag.get_dag(dag_id).tasks:
            assert task.retries >= 2, (dag_id, task.task_id)
            assert task.retry_delay >= timedelta(seconds=30), (dag_id, task.task_id)
