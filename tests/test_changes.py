"""The pure diff of watched fields: kinds, UTC dates, "no data" rules, baseline updates, messages."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_dataforseo.changes import (
    KINDS,
    apply_changes,
    check_watch_fields,
    count_changes,
    evaluate,
    merge,
    normalise_value,
    parse_api_date,
    render_message,
    snapshot_entry,
)

FIELDS = ("lost_date", "broken_backlinks")


def entry(url: str, **fields: Any) -> dict[str, Any]:
    return {"url": url, "fields": fields}


def test_every_kind_with_exact_values_and_deltas() -> None:
    baseline = {
        "https://a.com/": entry("https://a.com/", lost_date=None, broken_backlinks=3),
        "https://b.com/": entry("https://b.com/", lost_date="2026-10-01 10:00:00 +00:00", broken_backlinks=9),
        "https://c.com/": entry("https://c.com/", lost_date="2026-10-01 10:00:00 +00:00", broken_backlinks=0),
        "d.com": entry("d.com", lost_date=None, broken_backlinks=7),
    }
    snapshot = {
        "https://a.com/": entry("https://a.com/", lost_date="2026-11-02 08:00:00 +00:00", broken_backlinks=5),
        "https://b.com/": entry("https://b.com/", lost_date=None, broken_backlinks=4),
        "https://c.com/": entry("https://c.com/", lost_date="2026-11-03 00:00:01 +00:00", broken_backlinks=0),
        "d.com": entry("d.com", lost_date=None, broken_backlinks=7),
    }
    evaluation = evaluate(baseline, snapshot, FIELDS)
    assert evaluation.changes == [
        {
            "target": "https://a.com/",
            "inputs": ["https://a.com/"],
            "url": "https://a.com/",
            "field": "lost_date",
            "old": None,
            "new": "2026-11-02 08:00:00 +00:00",
            "kind": "lost",
            "delta": None,
        },
        {
            "target": "https://a.com/",
            "inputs": ["https://a.com/"],
            "url": "https://a.com/",
            "field": "broken_backlinks",
            "old": 3,
            "new": 5,
            "kind": "broken_backlinks_increased",
            "delta": 2,
        },
        {
            "target": "https://b.com/",
            "inputs": ["https://b.com/"],
            "url": "https://b.com/",
            "field": "lost_date",
            "old": "2026-10-01 10:00:00 +00:00",
            "new": None,
            "kind": "recovered",
            "delta": None,
        },
        {
            "target": "https://b.com/",
            "inputs": ["https://b.com/"],
            "url": "https://b.com/",
            "field": "broken_backlinks",
            "old": 9,
            "new": 4,
            "kind": "broken_backlinks_decreased",
            "delta": -5,
        },
        {
            "target": "https://c.com/",
            "inputs": ["https://c.com/"],
            "url": "https://c.com/",
            "field": "lost_date",
            "old": "2026-10-01 10:00:00 +00:00",
            "new": "2026-11-03 00:00:01 +00:00",
            "kind": "lost_date_changed",
            "delta": None,
        },
    ]
    assert evaluation.additions == {}
    assert evaluation.no_data == []
    assert count_changes(evaluation.changes) == {
        "lost": 1,
        "recovered": 1,
        "lost_date_changed": 1,
        "broken_backlinks_increased": 1,
        "broken_backlinks_decreased": 1,
        "changed": 0,
        "total": 5,
        "targets": 3,
    }


def test_other_fields_are_changed_with_a_delta_for_numbers() -> None:
    fields = ("backlinks", "referring_links_types", "rank")
    baseline = {"x.com": entry("x.com", backlinks=10, referring_links_types={"anchor": 10}, rank=5)}
    snapshot = {"x.com": entry("x.com", backlinks=12, referring_links_types={"anchor": 11}, rank=5.0)}
    changes = evaluate(baseline, snapshot, fields).changes
    assert [(c["field"], c["old"], c["new"], c["kind"], c["delta"]) for c in changes] == [
        ("backlinks", 10, 12, "changed", 2),
        ("referring_links_types", {"anchor": 10}, {"anchor": 11}, "changed", None),
    ]


def test_dates_are_compared_as_utc_instants() -> None:
    # the same instant written with another offset or in ISO form is no change
    assert parse_api_date("2019-11-15 12:57:46 +00:00") == parse_api_date("2019-11-15 14:57:46 +02:00")
    moment = parse_api_date("2019-11-15 14:57:46 +02:00")
    assert moment is not None and moment.utcoffset() is not None and moment.hour == 12
    assert normalise_value("lost_date", "2019-11-15T14:57:46+02:00") == (True, "2019-11-15 12:57:46 +00:00")
    assert normalise_value("lost_date", "2019-11-15 12:57:46") == (True, "2019-11-15 12:57:46 +00:00")
    baseline = {"x.com": entry("x.com", lost_date="2019-11-15 12:57:46 +00:00")}
    same = {"x.com": entry("x.com", lost_date="2019-11-15 14:57:46 +02:00")}
    assert evaluate(baseline, same, ("lost_date",)).changes == []
    later = {"x.com": entry("x.com", lost_date="2019-11-15 12:57:47 +00:00")}
    assert [c["kind"] for c in evaluate(baseline, later, ("lost_date",)).changes] == ["lost_date_changed"]
    # an unparseable date is no data for the field, never a change
    assert normalise_value("lost_date", "soon") == (False, None)
    assert evaluate(baseline, {"x.com": entry("x.com", lost_date="soon")}, ("lost_date",)).changes == []


def test_missing_targets_and_fields_are_no_data_never_lost() -> None:
    baseline = {
        "https://a.com/": entry("https://a.com/", lost_date=None, broken_backlinks=2),
        "https://gone.com/": entry("https://gone.com/", lost_date=None, broken_backlinks=8),
    }
    # gone.com has no item at all; a.com's broken_backlinks is null (no number) this time
    items = [{"url": "https://a.com/", "lost_date": None, "broken_backlinks": None}]
    snapshot = {"https://a.com/": snapshot_entry(items[0], FIELDS)}
    assert snapshot == {"https://a.com/": {"url": "https://a.com/", "fields": {"lost_date": None}}}
    evaluation = evaluate(baseline, snapshot, FIELDS)
    assert evaluation.changes == []
    assert evaluation.no_data == ["https://gone.com/"]
    # an item without the field at all is no data too
    assert snapshot_entry({"url": "u"}, FIELDS) == {"url": "u", "fields": {}}


def test_new_targets_and_fields_are_additions_not_changes() -> None:
    baseline = {"https://a.com/": entry("https://a.com/", lost_date=None)}
    snapshot = {
        "https://a.com/": entry("https://a.com/", lost_date=None, broken_backlinks=4),
        "https://new.com/": entry(
            "https://new.com/", lost_date="2026-01-01 00:00:00 +00:00", broken_backlinks=1
        ),
    }
    evaluation = evaluate(baseline, snapshot, FIELDS)
    assert evaluation.changes == []
    assert evaluation.additions == {
        "https://a.com/": entry("https://a.com/", broken_backlinks=4),
        "https://new.com/": entry(
            "https://new.com/", lost_date="2026-01-01 00:00:00 +00:00", broken_backlinks=1
        ),
    }
    assert merge(baseline, evaluation.additions) == {
        "https://a.com/": entry("https://a.com/", lost_date=None, broken_backlinks=4),
        "https://new.com/": entry(
            "https://new.com/", lost_date="2026-01-01 00:00:00 +00:00", broken_backlinks=1
        ),
    }


def test_apply_changes_stores_new_values_and_keeps_the_rest() -> None:
    baseline = {
        "https://a.com/": entry("https://a.com/", lost_date=None, broken_backlinks=3),
        "https://b.com/": entry("https://b.com/", lost_date=None, broken_backlinks=1),
    }
    snapshot = {
        "https://a.com/": entry("https://a.com/", lost_date="2026-11-02 08:00:00 +00:00", broken_backlinks=3)
    }
    changes = evaluate(baseline, snapshot, FIELDS).changes
    updated = apply_changes(baseline, changes)
    assert updated == {
        "https://a.com/": entry("https://a.com/", lost_date="2026-11-02 08:00:00 +00:00", broken_backlinks=3),
        "https://b.com/": entry("https://b.com/", lost_date=None, broken_backlinks=1),
    }
    assert baseline["https://a.com/"]["fields"]["lost_date"] is None  # input untouched
    assert evaluate(updated, snapshot, FIELDS).changes == []


def test_message_names_each_page_with_old_and_new_values() -> None:
    changes = evaluate(
        {"https://a.com/x": entry("https://a.com/x", lost_date=None, broken_backlinks=3)},
        {
            "https://a.com/x": entry(
                "https://a.com/x", lost_date="2026-11-02 08:00:00 +00:00", broken_backlinks=5
            )
        },
        FIELDS,
    ).changes
    message = render_message(changes)
    assert (
        message["subject"]
        == "DataForSEO backlinks: 2 changes on 1 page (lost 1, broken_backlinks_increased 1)"
    )
    assert message["text"].splitlines() == [
        message["subject"],
        "",
        "- https://a.com/x  lost_date: none -> 2026-11-02 08:00:00 +00:00 (lost)",
        "- https://a.com/x  broken_backlinks: 3 -> 5 (+2, broken_backlinks_increased)",
    ]
    assert "<td>https://a.com/x</td><td></td><td>broken_backlinks</td><td>3</td><td>5</td>" in message["html"]
    many = changes * 3
    assert render_message(many, max_lines=4)["text"].endswith("... and 2 more")


def test_html_is_escaped() -> None:
    changes = [
        {
            "target": "t",
            "inputs": ["t"],
            "url": "https://a.com/?q=<b>",
            "field": "f",
            "old": 1,
            "new": 2,
            "kind": "changed",
            "delta": 1,
        }
    ]
    assert "https://a.com/?q=&lt;b&gt;" in render_message(changes)["html"]


@pytest.mark.parametrize("bad", ["lost_date", [], ["lost_date", "lost_date"], [""], [3], None])
def test_watch_fields_are_validated(bad: Any) -> None:
    with pytest.raises(ValueError, match="watch_fields"):
        check_watch_fields(bad)


def test_kinds_are_the_documented_ones() -> None:
    assert KINDS == (
        "lost",
        "recovered",
        "lost_date_changed",
        "broken_backlinks_increased",
        "broken_backlinks_decreased",
        "changed",
    )


@pytest.mark.parametrize(
    "spelled",
    [
        "2019-11-15 12:57:46 +00:00",
        "2019-11-15 12:57:46.000 +00:00",
        "2019-11-15 12:57:46 UTC",
        "2019-11-15T12:57:46+00:00",
        "2019-11-15T12:57:46Z",
        "2019-11-15T12:57:46.000Z",
        "2019-11-15 14:57:46 +02:00",
        "2019-11-15 14:57:46 +0200",
        " 2019-11-15 12:57:46 ",
    ],
)
def test_every_spelling_of_a_date_is_the_same_instant(spelled: str) -> None:
    assert normalise_value("lost_date", spelled) == (True, "2019-11-15 12:57:46 +00:00")
    baseline = {"x.com": entry("x.com", lost_date="2019-11-15 12:57:46 +00:00")}
    assert evaluate(baseline, {"x.com": entry("x.com", lost_date=spelled)}, ("lost_date",)).changes == []


def test_empty_and_null_lost_date_both_mean_not_lost() -> None:
    assert normalise_value("lost_date", "") == normalise_value("lost_date", None) == (True, None)
    baseline = {"x.com": entry("x.com", lost_date=None)}
    assert evaluate(baseline, {"x.com": entry("x.com", lost_date="")}, ("lost_date",)).changes == []
    lost = evaluate(baseline, {"x.com": entry("x.com", lost_date="2026-11-02 08:00:00 UTC")}, ("lost_date",))
    assert [(c["kind"], c["old"], c["new"]) for c in lost.changes] == [
        ("lost", None, "2026-11-02 08:00:00 +00:00")
    ]


def test_counts_are_integers_and_no_number_is_no_data(caplog: pytest.LogCaptureFixture) -> None:
    for spelled in (3, "3", " 3 ", 3.0, "3.0"):
        assert normalise_value("broken_backlinks", spelled) == (True, 3)
    baseline = {"x.com": entry("x.com", broken_backlinks=3)}
    assert evaluate(baseline, {"x.com": entry("x.com", broken_backlinks="3")}, FIELDS).changes == []
    with caplog.at_level("WARNING"):
        for bad in ("n/a", "3.5", True, [3]):
            assert normalise_value("broken_backlinks", bad) == (False, None)
            assert evaluate(baseline, {"x.com": entry("x.com", broken_backlinks=bad)}, FIELDS).changes == []
    assert "broken_backlinks 'n/a' is not a whole number" in caplog.text
    more = evaluate(baseline, {"x.com": entry("x.com", broken_backlinks="5")}, FIELDS).changes
    assert [(c["old"], c["new"], c["kind"], c["delta"]) for c in more] == [
        (3, 5, "broken_backlinks_increased", 2)
    ]
