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


def _log_lines_the_readme_promises() -> list[str]:
    """The code spans of the README's "The log shows ..." paragraph, split at "...": what must be logged."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("The log shows")
    paragraph = text[start : text.index("\n\n", start)]
    spans = re.findall(r"`([^`]+)`", paragraph.split("For more")[0])
    return [part.strip() for span in spans for part in span.split("...") if part.strip()]


def test_readme_dag_runs_against_the_emulator(
    dataforseo_conn: str,
    airflow_db: object,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
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
    printed = capsys.readouterr().out + caplog.text
    promised = _log_lines_the_readme_promises()
    assert len(promised) == 3  # "3 targets", "planned into 1 request", "Request 1/1: ..."
    for line in promised:
        assert line in printed, line
    for row in rows:  # the report task's lines, exactly as the README's DAG prints them
        backlinks, domains = row["item"]["backlinks"], row["item"]["referring_domains"]
        assert f"{row['target']} backlinks: {backlinks} domains: {domains}" in printed


def test_readme_is_at_most_12_kb() -> None:
    assert len((REPO / "README.md").read_bytes()) <= 12 * 1024


def test_no_internal_comments_in_readme_or_docs() -> None:
    """Notes like ``<!-- section: sensor (issue 3) -->`` are for us, not for readers."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = [
        f"{page.name}: {comment}"
        for page in pages
        for comment in re.findall(r"<!--.*?-->", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    ]
    assert found == []


def _ci_steps() -> list[str]:
    """The scripts .ci/run runs, in order (comments skipped)."""
    lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return re.findall(r"bash (scripts/[\w.-]+\.sh)", code)


def _readme_ci_steps() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## CI\n")
    end = text.find("\n## ", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    return [step.removeprefix("./") for step in re.findall(r"`(\./scripts/[\w.-]+\.sh)", section)]


def test_ci_runs_the_readme_test_command_first() -> None:
    assert "./scripts/test.sh" in (REPO / "README.md").read_text(encoding="utf-8")
    assert _ci_steps()[0] == "scripts/test.sh"


def test_readme_describes_ci_as_it_runs() -> None:
    """The README's CI section names every script .ci/run runs, in the same order."""
    steps = list(dict.fromkeys(_ci_steps()))
    assert list(dict.fromkeys(_readme_ci_steps())) == steps
