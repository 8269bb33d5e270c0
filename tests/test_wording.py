"""Log lines and messages count in English: "1 request", "2 requests"."""

from __future__ import annotations

import ast
import re

import pytest

from airflow_provider_dataforseo.wording import counted
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("number", "noun", "plural", "expected"),
    [
        (1, "request", None, "1 request"),
        (2, "request", None, "2 requests"),
        (0, "target", None, "0 targets"),
        (1000, "item", None, "1000 items"),
        (1, "target without data", "targets without data", "1 target without data"),
        (3, "target without data", "targets without data", "3 targets without data"),
    ],
)
def test_counted(number: int, noun: str, plural: str | None, expected: str) -> None:
    assert counted(number, noun, plural) == expected


#: ``%d`` directly followed by a plural noun: prints "1 requests" for one.
FIXED_PLURAL = re.compile(r"%d (?:[a-z]+ )?([a-z]+s)\b")
#: Words ending in "s" after %d that are not a counted noun (units, "%d of its", "%d is").
ALLOWED = {"s", "ms", "its", "this", "is", "was", "has", "as", "us"}


def _string_constants(path: str) -> list[tuple[int, str]]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_log_line_prints_a_fixed_plural_after_a_count() -> None:
    """The whole kind, not the one example: every ``%d <noun>s`` in the package goes through counted()."""
    found = []
    for path in sorted((REPO / "airflow_provider_dataforseo").rglob("*.py")):
        relative = str(path.relative_to(REPO))
        for line, text in _string_constants(relative):
            for match in FIXED_PLURAL.finditer(text):
                if match.group(1) not in ALLOWED:
                    found.append(f"{relative}:{line}: {match.group(0)!r}")
    assert found == []


def test_one_request_log_lines(
    dataforseo_conn: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """One target in one request: the operator's log says "1 target", "1 request", "1 item"."""
    import logging

    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    operator = BulkPagesSummaryOperator(task_id="one", targets=["airflow.apache.org"])
    with caplog.at_level(logging.INFO):
        rows = operator.execute({})  # type: ignore[arg-type]
    assert len(rows) == 1
    # Airflow's structlog writes to stdout, or to the logging handlers once a test configured them
    text = capsys.readouterr().out + caplog.text
    assert "1 target (from 1 distinct input string) planned into 1 request (lower bound 1)" in text
    assert "Request 1/1: 1 target, 1 item, cost 0.02003 USD" in text
    assert "Done: 1 request, 1 item, 0 targets without data, 0 unmatched items, cost 0.02003 USD" in text
