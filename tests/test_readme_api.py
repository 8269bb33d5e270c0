"""The README's "Python API at a glance" snippets run as they stand."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import REPO

SECTION = "## Python API at a glance"


def _snippets() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_section_has_snippets() -> None:
    assert len(_snippets()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_readme_api_snippet_runs(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CONN_DATAFORSEO_DEFAULT", "AIRFLOW_CONN_WRONG"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the snippet sets them
    exec(compile(_snippets()[index], f"README.md snippet {index}", "exec"), {"__name__": "readme"})
