"""One reading of flags for the operator, the change sensor and its trigger."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dataforseo import flags
from airflow_provider_dataforseo.operators import bulk_pages_summary
from airflow_provider_dataforseo.sensors.backlinks_change import BacklinksChangeSensor
from airflow_provider_dataforseo.triggers.backlinks_change import BacklinksChangeTrigger


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, False),
        ("false", False),
        ("False", False),  # as Jinja renders a False Param
        (" FALSE ", False),
        ("0", False),
        (0, False),
        ("no", False),
        ("off", False),
        (True, True),
        ("True", True),
        ("1", True),
        (1, True),
        ("yes", True),
        ("on", True),
    ],
)
def test_booleans_as_given_or_rendered(value: object, expected: bool) -> None:
    assert flags.as_bool(value, "include_subdomains") is expected
    # the same reading in the trigger (the sensor reads it through the same function when rendered)
    trigger = BacklinksChangeTrigger(
        targets=["a.com"], baseline_path="file:///tmp/x", include_subdomains=value
    )  # type: ignore[arg-type]
    assert trigger.include_subdomains is expected


@pytest.mark.parametrize("value", [None, "", "sometimes", 2, 0.0, [], "tru"])
def test_other_values_are_refused_naming_them(value: object) -> None:
    with pytest.raises(ValueError) as info:
        flags.as_bool(value, "include_subdomains")
    assert str(info.value) == f"include_subdomains must be true or false, got {value!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("one_hundred", "one_hundred"), (" One_Thousand ", "one_thousand")],
)
def test_rank_scale(value: object, expected: str | None) -> None:
    assert flags.as_rank_scale(value) == expected


@pytest.mark.parametrize("value", ["one_million", 100, True])
def test_bad_rank_scale_is_named(value: object) -> None:
    with pytest.raises(ValueError, match=r"rank_scale must be one of one_thousand, one_hundred, got"):
        flags.as_rank_scale(value)


def test_one_helper_everywhere() -> None:
    assert bulk_pages_summary.as_bool is flags.as_bool
    sensor = BacklinksChangeSensor(task_id="s", targets=["a.com"], baseline_path="file:///tmp/x")
    assert {"include_subdomains", "rank_scale", "watch_id"} <= set(sensor.template_fields)
    kwargs: dict[str, Any] = {"task_id": "t", "targets": ["a.com"], "baseline_path": "file:///tmp/x"}
    # a literal is checked when the DAG is parsed, a template once rendered
    with pytest.raises(ValueError, match="include_subdomains must be true or false, got 'maybe'"):
        BacklinksChangeSensor(**kwargs, include_subdomains="maybe")
    BacklinksChangeSensor(**kwargs, include_subdomains="{{ params.subdomains }}")
    with pytest.raises(ValueError, match="rank_scale must be one of"):
        BacklinksChangeSensor(**kwargs, rank_scale="one_million")


def test_mapped_sensor_instances_keep_their_baselines_apart() -> None:
    """``.expand()`` over sensors: each map index gets its own default watch id (and baseline)."""
    from types import SimpleNamespace

    from airflow.sdk import DAG

    with DAG("mapped_watch", schedule=None):
        sensor = BacklinksChangeSensor(task_id="s", targets=["a.com"], baseline_path="file:///tmp/x")
    ids = {sensor._watch_id({"ti": SimpleNamespace(map_index=i)}) for i in (-1, 0, 1)}  # type: ignore[arg-type]
    assert ids == {"mapped_watch.s", "mapped_watch.s[0]", "mapped_watch.s[1]"}
    named = BacklinksChangeSensor(task_id="n", targets=["a.com"], baseline_path="file:///tmp/x", watch_id="w")
    assert named._watch_id({"ti": SimpleNamespace(map_index=3)}) == "w"  # type: ignore[arg-type]
