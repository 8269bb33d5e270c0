"""``constraints/deployment.txt``: the pinned versions the deployment test installs with.

Airflow's own constraints files cannot be reached from CI, so the project keeps its own, frozen from
the venv ``scripts/deployment_test.sh`` passes with. These checks keep it usable by hand too.
"""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

CONSTRAINTS = REPO / "constraints" / "deployment.txt"


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate(CONSTRAINTS.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        assert match, f"line {number} is not 'name==version': {line!r}"
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Version(match.group(2))
    return pins


def test_celery_stays_below_the_release_that_breaks_the_celery_provider() -> None:
    # celery 5.7.0: "cannot import name 'retry' from 'celery.backends.database'" in
    # apache-airflow-providers-celery 3.26.0 (issue 14)
    pins = _pins()
    assert pins["celery"] < Version("5.7")
    for provider in ("celery", "postgres", "redis", "smtp", "standard"):
        assert f"apache-airflow-providers-{provider}" in pins


def test_constraints_satisfy_the_package_requirements() -> None:
    import tomllib

    pins = _pins()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec.split("#", 1)[0].strip())
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, (
            f"{name} (a dependency of the provider) is not pinned: regenerate the file (see its header)"
        )
        assert requirement.specifier.contains(pins[name]), (name, str(pins[name]), str(requirement.specifier))
    assert pins["apache-airflow"] == pins["apache-airflow-core"]
    assert "airflow-provider-dataforseo" not in pins  # the provider itself is installed from source
