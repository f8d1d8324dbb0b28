"""DHIS2 import summaries read value by value, in both shapes (destinations.md §1.3)."""

import pytest

from cht_bridge.aggregate.summaries import UnreadableSummary, attribute, read_summary

POSTED = [
    {"dataElement": "deAAAAAAAA1", "period": "202601", "orgUnit": "ouAAAAAAAA1", "value": "3"},
    {"dataElement": "deAAAAAAAA1", "period": "202601", "orgUnit": "ouUNKNOWN01", "value": "4"},
    {"dataElement": "deAAAAAAAA2", "period": "202601", "orgUnit": "ouAAAAAAAA1", "value": "5"},
]
INNER = {
    "responseType": "ImportSummary",
    "status": "WARNING",
    "importCount": {"imported": 2, "updated": 0, "ignored": 1, "deleted": 0},
    "conflicts": [
        {
            "object": "ouUNKNOWN01",
            "objects": {"orgUnit": "ouUNKNOWN01"},
            "value": "Org unit not found or not accessible",
            "errorCode": "E7610",
            "property": "orgUnit",
            "indexes": [1],
        },
    ],
    "rejectedIndexes": [1],
}


def test_the_wrapped_shape_of_api_38_and_later():
    body = {
        "httpStatus": "Conflict",
        "httpStatusCode": 409,
        "status": "WARNING",
        "message": "One more conflicts",
        "response": INNER,
    }
    summary = read_summary(body)
    assert summary.wrapped and summary.status == "WARNING"
    assert (summary.imported, summary.ignored, summary.stored) == (2, 1, 2)
    found = attribute(summary, POSTED)
    assert found.rejected == {1: "E7610: Org unit not found or not accessible"}
    assert found.unpinned == ()


def test_the_bare_shape_before_api_38_without_indexes():
    old = {
        "responseType": "ImportSummary",
        "status": "WARNING",
        "importCount": {"imported": 2, "updated": 0, "ignored": 1, "deleted": 0},
        "conflicts": [{"object": "ouUNKNOWN01", "value": "Org unit not found or not accessible"}],
    }
    summary = read_summary(old)
    assert not summary.wrapped
    assert attribute(summary, POSTED).rejected == {1: "Org unit not found or not accessible"}


def test_objects_pin_a_conflict_to_every_value_they_name():
    body = {
        "status": "WARNING",
        "importCount": {"imported": 1, "ignored": 2},
        "conflicts": [{"objects": {"dataElement": "deAAAAAAAA1"}, "value": "Data element not in data set"}],
    }
    assert sorted(attribute(read_summary(body), POSTED).rejected) == [0, 1]


def test_a_conflict_naming_no_posted_value_is_unpinned():
    body = {
        "status": "WARNING",
        "importCount": {"imported": 2, "ignored": 1},
        "conflicts": [{"object": "somethingElse", "value": "Period is locked"}],
    }
    found = attribute(read_summary(body), POSTED)
    assert found.rejected == {} and found.unpinned == ("Period is locked",)


def test_rejected_indexes_without_a_conflict_are_still_rejections():
    body = {"status": "WARNING", "importCount": {"imported": 2, "ignored": 1}, "rejectedIndexes": [2]}
    assert list(attribute(read_summary(body), POSTED).rejected) == [2]


@pytest.mark.parametrize("body", [None, [], {"httpStatus": "OK"}, {"response": {"responseType": "Other"}}])
def test_anything_else_is_unreadable(body):
    with pytest.raises(UnreadableSummary):
        read_summary(body)
