"""Apache Airflow provider for the DataForSEO Backlinks API."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]

#: The Use sandbox switch's help text in the connection form: it names the form's fields.
SANDBOX_DESCRIPTION = (
    "On: send requests to https://sandbox.dataforseo.com (free dummy data, same limits) when the "
    "Base URL field is empty. Off (the default): the paid API, https://api.dataforseo.com."
)


def documentation_url() -> str | None:
    """The ``Documentation`` project URL of the installed distribution, or ``None``.

    ``[project.urls]`` in ``pyproject.toml`` is the one place it is set; Airflow's providers
    manager reads the same metadata for the provider's ``documentation-url``.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        urls: list[str] = distribution("airflow-provider-dataforseo").metadata.get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "documentation":
            return url.strip()
    return None


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's providers manager.

    Registered under the ``apache_airflow_provider`` entry point. The dict is validated by Airflow
    against ``airflow/provider_info.schema.json``; ``conn-fields`` and ``ui-field-behaviour``
    declare the connection form (Airflow >= 3.2).

    :return: the provider-info dict.
    """
    return {
        "package-name": "airflow-provider-dataforseo",
        "name": "DataForSEO",
        "description": "Hook, operator, sensor and offline emulator for the DataForSEO Backlinks API.",
        "versions": [__version__],
        "documentation-url": documentation_url(),
        "integrations": [
            {
                "integration-name": "DataForSEO",
                "external-doc-url": "https://docs.dataforseo.com/v3/backlinks/overview/",
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "dataforseo",
                "hook-class-name": "airflow_provider_dataforseo.hooks.dataforseo.DataForSeoHook",
                "hook-name": "DataForSEO",
                "conn-fields": {
                    "sandbox": {
                        "label": "Use sandbox",
                        "description": SANDBOX_DESCRIPTION,
                        # "null" too: an optional switch (the form marks a plain "boolean" required)
                        "schema": {"type": ["boolean", "null"], "default": False},
                    }
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "API login", "password": "API password", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.dataforseo.com",
                        "login": "API login from app.dataforseo.com/api-access",
                        "password": "API password (not the website password)",
                    },
                },
            }
        ],
    }
