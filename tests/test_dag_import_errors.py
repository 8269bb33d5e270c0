"""Bad operator arguments fail the DAG file's import (as the failure table says), naming the value."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

DAG_FILE = """
import pendulum
from airflow.sdk import dag

from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC"))
def bad_argument():
    BulkPagesSummaryOperator(task_id="fetch", targets=["example.com"], {argument})


bad_argument()
"""


@pytest.mark.parametrize(
    ("argument", "named"),
    [
        ('rank_scale="one_million"', "one_million"),
        ("max_active_requests=31", "31"),
        ("requests_per_minute=0", "0"),
        ("max_cost_usd=-1", "-1"),
    ],
)
def test_bad_argument_is_an_import_error_naming_the_value(tmp_path: Path, argument: str, named: str) -> None:
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "bad_argument.py"
    path.write_text(DAG_FILE.format(argument=argument), encoding="utf-8")
    bag = DagBag(dag_folder=str(tmp_path))
    assert "bad_argument" not in bag.dag_ids  # no DAG, so no run and no task can start
    (error,) = bag.import_errors.values()
    assert "ValueError" in error
    assert named in error.splitlines()[-1]
