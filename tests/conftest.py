"""Shared fixtures: an isolated Airflow home on SQLite, and the emulator on loopback.

The environment is set before Airflow is imported anywhere, so every test sees a throw-away
``AIRFLOW_HOME`` and no example DAGs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="dataforseo-airflow-home-"))
REPO = Path(__file__).resolve().parent.parent
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")

from typing import TYPE_CHECKING, Any  # noqa: E402

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from airflow_provider_dataforseo.emulator import EmulatorConfig, EmulatorServer  # noqa: E402

# CI (CI=true, as .ci/run runs) draws the same hypothesis examples every run, so a build passes or
# fails on the code, not on the draw; a developer's run explores new examples each time (and keeps
# the failing ones in .hypothesis/). A counterexample found locally becomes an @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

if TYPE_CHECKING:
    from collections.abc import Iterator

EMULATOR_LOGIN = "tester"
EMULATOR_PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """The emulator on 127.0.0.1 and a free port, for the whole session."""
    server = EmulatorServer(
        EmulatorConfig(login=EMULATOR_LOGIN, password=EMULATOR_PASSWORD, balance_usd=1000.0)
    )
    with server:
        yield server


def conn_json(url: str, *, login: str = EMULATOR_LOGIN, password: str = EMULATOR_PASSWORD) -> str:
    """An ``AIRFLOW_CONN_...`` JSON value for a DataForSEO connection."""
    import json

    return json.dumps({"conn_type": "dataforseo", "login": login, "password": password, "host": url})


@pytest.fixture
def dataforseo_conn(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``dataforseo_default`` pointing at the emulator; returns the conn id."""
    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_DEFAULT", conn_json(emulator.url))
    return "dataforseo_default"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A fresh SQLite metadata database in the throw-away AIRFLOW_HOME."""
    from airflow.utils import db

    db.resetdb()
    return _HOME


def run_dag(dag: object, **kwargs: object) -> object:
    """Register a DAG built in a test and run it with ``dag.test()``; return the DagRun.

    ``dag.test()`` only runs DAGs Airflow can find, so the DAG is synced to the database first.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(collect_dags=False)
    bag.bag_dag(dag)  # type: ignore[arg-type]
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(**kwargs)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3-protocol server on 127.0.0.1 and a free port; yields its endpoint URL.

    Started here (never assumed running) and polled until it answers, then stopped at the end.
    """
    import time

    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 30
    while True:  # poll readiness: moto's own API answers once the app is loaded
        try:
            if requests.get(f"{url}/moto-api/data.json", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"moto server did not answer on {url}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.stop()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the moto server at ``endpoint_url``, with :func:`aws_conn_json`'s keys."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret-key",
    )


def aws_conn_json(endpoint_url: str) -> str:
    """An ``AIRFLOW_CONN_...`` JSON value for an ``aws`` connection to an S3-compatible endpoint."""
    import json

    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing-key-id",
            "password": "testing-secret-key",
            "extra": {"region_name": "us-east-1", "endpoint_url": endpoint_url},
        }
    )


@pytest.fixture
def airflow_api(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Airflow's own REST API app (``/api/v2`` and ``/ui``) in-process, as a FastAPI TestClient.

    Simple auth manager with every user admin; ``[core] test_connection`` enabled.
    """
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    purge_cached_app()
    with TestClient(create_app(apps="core")) as client:
        yield client
    purge_cached_app()
