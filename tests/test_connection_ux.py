"""The connection as a user meets it: the form Airflow's UI renders, and the "Test" button / CLI.

- The provider info as Airflow parses it (``ProvidersManager``), and the connection hook metadata
  Airflow's REST API serves to the UI's connection form (``GET /ui/connections/hook_meta``, asked
  in-process of Airflow's own FastAPI app): our labels, placeholders, hidden fields and the
  ``sandbox`` boolean field.
- ``airflow connections test dataforseo_default`` (with ``[core] test_connection = Enabled``) and
  the REST API's ``POST /api/v2/connections/test`` (the UI's "Test" button) against the emulator:
  they report the login and the balance from ``GET /v3/appendix/user_data``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_dataforseo import api
from tests.conftest import EMULATOR_LOGIN, EMULATOR_PASSWORD, conn_json

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from airflow_provider_dataforseo.emulator import EmulatorServer

HOOK_CLASS = "airflow_provider_dataforseo.hooks.dataforseo.DataForSeoHook"
SANDBOX_DESCRIPTION = (
    "On: send requests to https://sandbox.dataforseo.com (free dummy data, same limits) when the "
    "Base URL field is empty. Off (the default): the paid API, https://api.dataforseo.com."
)


def _balance(emulator: EmulatorServer) -> float:
    reply = requests.get(
        f"{emulator.url}{api.USER_DATA_PATH}", auth=(EMULATOR_LOGIN, EMULATOR_PASSWORD), timeout=5
    ).json()
    return float(reply["tasks"][0]["result"][0]["money"]["balance"])


def test_providers_manager_parses_our_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks["dataforseo"]
    assert hook is not None
    assert (hook.hook_class_name, hook.connection_id_attribute_name, hook.hook_name) == (
        HOOK_CLASS,
        "dataforseo_conn_id",
        "DataForSEO",
    )
    assert manager.providers["airflow-provider-dataforseo"].data["connection-types"][0]["hook-name"] == (
        "DataForSEO"
    )


def test_rest_api_serves_the_connection_form_to_the_ui(airflow_api: TestClient) -> None:
    reply = airflow_api.get("/ui/connections/hook_meta")
    assert reply.status_code == 200, reply.text
    ours = [meta for meta in reply.json() if meta["connection_type"] == "dataforseo"]
    assert len(ours) == 1
    meta: dict[str, Any] = ours[0]
    assert (meta["hook_class_name"], meta["hook_name"]) == (HOOK_CLASS, "DataForSEO")

    standard = meta["standard_fields"]
    assert standard["login"] == {
        "hidden": False,
        "title": "API login",
        "placeholder": "API login from app.dataforseo.com/api-access",
    }
    assert standard["password"] == {
        "hidden": False,
        "title": "API password",
        "placeholder": "API password (not the website password)",
    }
    assert standard["host"] == {
        "hidden": False,
        "title": "Base URL",
        "placeholder": "https://api.dataforseo.com",
    }
    assert standard["url_schema"]["hidden"] is True
    assert standard["port"]["hidden"] is True

    sandbox = meta["extra_fields"]["sandbox"]
    assert sandbox["value"] is False
    assert sandbox["schema"]["type"] == ["boolean", "null"]  # optional: the form marks no "*"
    assert sandbox["schema"]["title"] == "Use sandbox"
    assert sandbox["description"] == SANDBOX_DESCRIPTION
    assert set(meta["extra_fields"]) == {"sandbox"}


def test_rest_api_test_button_reports_login_and_balance(
    airflow_api: TestClient, emulator: EmulatorServer
) -> None:
    """``POST /api/v2/connections/test``: what the UI's "Test" button of the connection form calls."""
    host = emulator.url
    body = {
        "connection_id": "dataforseo_form",
        "conn_type": "dataforseo",
        "host": host,
        "login": EMULATOR_LOGIN,
        "password": EMULATOR_PASSWORD,
    }
    balance = _balance(emulator)
    reply = airflow_api.post("/api/v2/connections/test", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": True, "message": f"{EMULATOR_LOGIN}, balance {balance} USD"}
    assert _balance(emulator) == balance  # user_data is free

    reply = airflow_api.post("/api/v2/connections/test", json={**body, "password": "wrong-password"})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["status"] is False
    assert "40100" in result["message"]
    assert "wrong-password" not in result["message"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO", **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_airflow_connections_test_cli_reports_login_and_balance(emulator: EmulatorServer) -> None:
    """``airflow connections test`` prints only "Connection success!" and, unless ``--verbose``,
    silences every log; with ``--verbose`` the hook's log line shows the login and balance."""
    balance = _balance(emulator)
    done = _cli(
        "connections",
        "test",
        "dataforseo_default",
        "--verbose",
        env={
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW_CONN_DATAFORSEO_DEFAULT": conn_json(emulator.url),
        },
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Connection success!" in done.stdout
    assert (
        f"DataForSEO connection 'dataforseo_default' works: {EMULATOR_LOGIN}, balance {balance} USD" in output
    )
    assert EMULATOR_PASSWORD not in output


def test_connection_json_from_the_readme_round_trips() -> None:
    """The README's sandbox connection JSON is read by Airflow as the hook expects."""
    from airflow.sdk import Connection

    conn = Connection.from_json(
        json.dumps(
            {
                "conn_type": "dataforseo",
                "login": "you@example.com",
                "password": "p",
                "extra": {"sandbox": True},
            }
        ),
        conn_id="dataforseo_default",
    )
    assert conn.conn_type == "dataforseo"
    assert conn.extra_dejson == {"sandbox": True}


def test_rest_api_test_button_names_a_bad_sandbox_value_and_a_port_clash(
    airflow_api: TestClient, emulator: EmulatorServer
) -> None:
    """The "Test" button reports a connection the hook cannot use, naming the bad value; nothing is sent."""
    body = {
        "connection_id": "dataforseo_form",
        "conn_type": "dataforseo",
        "host": emulator.url,
        "login": EMULATOR_LOGIN,
        "password": EMULATOR_PASSWORD,
    }
    balance = _balance(emulator)
    reply = airflow_api.post("/api/v2/connections/test", json={**body, "extra": '{"sandbox": "ture"}'})
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] is False
    assert "extra 'sandbox' must be true or false, got 'ture'" in reply.json()["message"]

    scheme_host, port = emulator.url.rsplit(":", 1)
    reply = airflow_api.post("/api/v2/connections/test", json={**body, "port": int(port) + 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] is False
    assert f"names port {port} but its Port field says {int(port) + 1}" in reply.json()["message"]

    reply = airflow_api.post(
        "/api/v2/connections/test", json={**body, "host": scheme_host, "port": int(port)}
    )
    assert reply.json() == {"status": True, "message": f"{EMULATOR_LOGIN}, balance {balance} USD"}
    assert _balance(emulator) == balance
