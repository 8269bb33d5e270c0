"""The provider registers itself correctly with Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_dataforseo import __version__, get_provider_info

SCHEMA_DIR = Path(os.path.dirname(airflow.__file__))


def test_provider_info_matches_airflows_runtime_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_form_matches_provider_yaml_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "provider.yaml.schema.json").read_text())
    schema.pop("required", None)
    info = get_provider_info()
    jsonschema.validate({"connection-types": info["connection-types"]}, schema)
    conn = info["connection-types"][0]
    assert conn["connection-type"] == "dataforseo"
    assert conn["hook-class-name"] == "airflow_provider_dataforseo.hooks.dataforseo.DataForSeoHook"
    assert conn["ui-field-behaviour"]["relabeling"]["login"] == "API login"
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "API password"
    assert conn["ui-field-behaviour"]["placeholders"]["host"] == "https://api.dataforseo.com"
    assert conn["conn-fields"]["sandbox"]["schema"] == {"type": ["boolean", "null"], "default": False}
    assert {"schema", "port"} <= set(conn["ui-field-behaviour"]["hidden-fields"])


def test_sandbox_field_names_the_base_url_field_and_defaults_to_a_boolean() -> None:
    """The switch's help names the form's own field (Base URL, not Host); its default is False."""
    conn = get_provider_info()["connection-types"][0]
    sandbox = conn["conn-fields"]["sandbox"]
    assert "Base URL field is empty" in sandbox["description"]
    assert conn["ui-field-behaviour"]["relabeling"]["host"] == "Base URL"  # the name it refers to
    assert "Host" not in sandbox["description"]
    assert sandbox["schema"]["default"] is False


def test_documentation_url_comes_from_the_project_urls() -> None:
    """pyproject's [project.urls] Documentation is the one place; Airflow and we read it the same way."""
    from importlib.metadata import distribution

    urls = dict(
        entry.split(", ", 1)
        for entry in distribution("airflow-provider-dataforseo").metadata.get_all("Project-URL")
    )
    assert urls["Documentation"].startswith("https://")
    assert get_provider_info()["documentation-url"] == urls["Documentation"]


def test_package_name_equals_distribution_name() -> None:
    from importlib.metadata import distribution

    assert get_provider_info()["package-name"] == distribution("airflow-provider-dataforseo").metadata["Name"]
    assert get_provider_info()["versions"][0] == __version__


def _airflow_cli(*args: str) -> str:
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout


def test_airflow_cli_lists_provider_and_hook() -> None:
    providers = json.loads(_airflow_cli("providers", "list", "-o", "json"))
    assert {"package_name": "airflow-provider-dataforseo", "version": __version__} in [
        {"package_name": p["package_name"], "version": p["version"]} for p in providers
    ]
    hooks = json.loads(_airflow_cli("providers", "hooks", "-o", "json"))
    ours = [h for h in hooks if h["connection_type"] == "dataforseo"]
    assert ours and ours[0]["class"] == "airflow_provider_dataforseo.hooks.dataforseo.DataForSeoHook"
    assert ours[0]["package_name"] == "airflow-provider-dataforseo"
    assert ours[0]["hook_name"] == "DataForSEO"
