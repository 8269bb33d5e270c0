"""The README's first DAG runs as written against the emulator (the other examples: test_docs_examples)."""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any

from tests.conftest import REPO, run_dag

if TYPE_CHECKING:
    import pytest


def _python_blocks(path: str) -> list[str]:
    text = (REPO / path).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _readme_dag_source() -> str:
    (source,) = [block for block in _python_blocks("README.md") if "@dag(" in block]
    return source


def test_readme_dag_runs_against_the_emulator(
    dataforseo_conn: str, airflow_db: object, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copy-paste the README's DAG into a file, import it, and run it through dag.test()."""
    path = tmp_path / "dataforseo_first.py"
    path.write_text(_readme_dag_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("dataforseo_first", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dataforseo_first()  # the README calls it once; a second call builds the same DAG
    assert dag.dag_id == "dataforseo_first"

    run: Any = run_dag(dag)

    assert run.state == "success"
    rows = run.get_task_instance("fetch").xcom_pull(task_ids="fetch")
    assert sorted(row["target"] for row in rows) == [
        "airflow.apache.org",
        "https://www.python.org/",
        "wikipedia.org",
    ]
    assert all(isinstance(row["item"]["backlinks"], int) for row in rows)
    printed = capsys.readouterr().out
    for row in rows:  # the report task's lines, exactly as the README's DAG prints them
        backlinks, domains = row["item"]["backlinks"], row["item"]["referring_domains"]
        assert f"{row['target']} backlinks: {backlinks} domains: {domains}" in printed
