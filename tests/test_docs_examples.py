"""Every ``python`` example in README.md and docs/*.md runs, so the examples cannot rot.

Each block runs on its own, in a fresh namespace, with the ``dataforseo_default`` connection
pointing at the emulator, inside a ``DAG`` context. A fragment that shows a few arguments may use
``BulkPagesSummaryOperator`` without importing it (the namespace has it), and may wire tasks
without a DAG of its own; anything else it uses it imports itself. Blocks that build DAGs only
build them (the README's first DAG is also run, by tests/test_readme_api.py); the API snippets
call the emulator.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import REPO

PAGES = ["README.md", *sorted(str(path.relative_to(REPO)) for path in (REPO / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = (REPO / page).read_text(encoding="utf-8")
        found += [(page, index, block) for index, block in enumerate(PYTHON_BLOCK.findall(text))]
    return found


BLOCKS = _blocks()


def test_the_examples_are_found() -> None:
    pages = {page for page, _, _ in BLOCKS}
    assert {"README.md", "docs/operator.md", "docs/hook.md", "docs/targets.md"} <= pages
    assert len(BLOCKS) >= 12


@pytest.mark.parametrize(("page", "index", "source"), BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_example_runs(
    page: str, index: int, source: str, dataforseo_conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AIRFLOW_CONN_DATAFORSEO_DEFAULT", "AIRFLOW_CONN_WRONG"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after a snippet sets them
    from airflow.sdk import DAG

    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    namespace = {"__name__": "docs_example", "BulkPagesSummaryOperator": BulkPagesSummaryOperator}
    with DAG(dag_id=f"docs_example_{index}", schedule=None):  # a fragment's tasks need a DAG around them
        exec(compile(source, f"{page} example {index}", "exec"), namespace)


CONN_EXPORT = re.compile(r"export AIRFLOW_CONN_DATAFORSEO_DEFAULT='([^']+)'")
KNOWN_ROOTS = {"https://api.dataforseo.com", "https://sandbox.dataforseo.com", "http://127.0.0.1:8765"}


def _connection_examples() -> list[tuple[str, str]]:
    return [
        (page, value)
        for page in PAGES
        for value in CONN_EXPORT.findall((REPO / page).read_text(encoding="utf-8"))
    ]


@pytest.mark.parametrize(("page", "value"), _connection_examples())
def test_connection_example_is_read_as_documented(
    page: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ``AIRFLOW_CONN_DATAFORSEO_DEFAULT`` the docs show (JSON or URI) gives the hook a login,
    a password and one of the three API roots; one that says sandbox gives the sandbox."""
    from airflow_provider_dataforseo.hooks.dataforseo import DataForSeoHook

    monkeypatch.setenv("AIRFLOW_CONN_DATAFORSEO_DEFAULT", value)
    hook = DataForSeoHook()
    assert hook.connection.login and hook.connection.password
    assert hook.base_url in KNOWN_ROOTS
    assert (hook.base_url == "https://sandbox.dataforseo.com") == ("sandbox" in value)


def test_the_connection_examples_cover_json_and_uri() -> None:
    values = [value for _, value in _connection_examples()]
    assert any(value.startswith("{") for value in values)
    assert any(value.startswith("dataforseo://") for value in values)
