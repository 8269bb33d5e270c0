"""The JSON Schemas of a row and of the manifest in docs/operator.md hold for a real run."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import jsonschema

from tests.conftest import REPO

if TYPE_CHECKING:
    from pathlib import Path


def _schema(heading: str) -> dict[str, object]:
    text = (REPO / "docs" / "operator.md").read_text(encoding="utf-8")
    start = text.index(f"### {heading}\n")
    block = re.search(r"```json\n(.*?)```", text[start:], flags=re.DOTALL)
    assert block is not None
    schema: dict[str, object] = json.loads(block.group(1))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_rows_and_manifest_match_the_documented_schemas(dataforseo_conn: str, tmp_path: Path) -> None:
    from airflow_provider_dataforseo.operators.bulk_pages_summary import BulkPagesSummaryOperator

    targets = ["https://www.python.org/", "airflow.apache.org", "WWW.Wikipedia.org", "wikipedia.org"]
    operator = BulkPagesSummaryOperator(
        task_id="schemas", targets=targets, output_path=tmp_path.as_uri() + "/"
    )
    manifest = operator.execute({})  # type: ignore[arg-type]
    jsonschema.validate(manifest, _schema("Manifest schema"))
    assert manifest["items"] == 3 and manifest["targets"] == 3

    rows = [json.loads(line) for line in (tmp_path / "bulk_pages_summary.jsonl").read_text().splitlines()]
    row_schema = _schema("Row schema")
    for row in rows:
        jsonschema.validate(row, row_schema)
    by_target = {row["target"]: row for row in rows}
    assert by_target["wikipedia.org"]["inputs"] == ["WWW.Wikipedia.org", "wikipedia.org"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_the_schemas_reject_what_they_should() -> None:
    row_schema = _schema("Row schema")
    errors = list(jsonschema.Draft202012Validator(row_schema).iter_errors({"target": 1, "inputs": "x"}))
    assert {error.validator for error in errors} >= {"type", "required"}
