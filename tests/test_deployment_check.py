"""The pure helpers of ``scripts/deployment_check.py`` (the deployment test's driver, run by
``scripts/deployment_test.sh`` in CI): what it expects of the example DAGs, computed with the
provider's own reading, normal form and planning, so that a moved function breaks here first."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def driver() -> Any:
    spec = importlib.util.spec_from_file_location(
        "deployment_check", REPO / "scripts" / "deployment_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_main_dag_figures(driver: Any) -> None:
    targets = driver.main_dag_targets()
    assert len(targets) == 4_000
    assert len(driver.known_targets(targets)) == 3_864  # the rows every main run must write
    assert driver.planned_requests(targets) == 20  # 2,000 main domains / 100


def test_at_scale_figures(driver: Any) -> None:
    targets = driver.at_scale_targets(6_000)
    assert len(targets) == len(set(targets)) == 6_000
    assert driver.planned_requests(targets) == 6  # max(6,000 / 1000, 300 main domains / 100)
    known = driver.known_targets(targets)
    assert 0 < len(known) < 6_000


def test_pool_leaves_headroom_for_the_triggers(driver: Any) -> None:
    # the deferred sensor and the AssetWatcher poll outside the pool: one request each
    assert driver.POOL_SLOTS + driver.TRIGGERS_OUTSIDE_POOL == driver.API_SIMULTANEOUS == 30
