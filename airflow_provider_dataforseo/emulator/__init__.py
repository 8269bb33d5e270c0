"""Offline emulator of the DataForSEO v3 API for ``bulk_pages_summary/live`` and ``user_data``.

Run it with ``dataforseo-emulator`` (or ``python -m airflow_provider_dataforseo.emulator``), or in a
test with :class:`EmulatorServer`. Synthetic data come from :mod:`.data` (pure, deterministic).
"""

from __future__ import annotations

from airflow_provider_dataforseo.emulator.app import create_app
from airflow_provider_dataforseo.emulator.server import EmulatorConfig, EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer", "create_app"]
