"""A tracker validation report read per document: DHIS2's code and message, data values kept out."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests

from cht_bridge.config.kinds.dhis2_tracker import TrackedEntityRule, TrackerSettings
from cht_bridge.destinations import registry
from cht_bridge.destinations.dhis2 import uids
from cht_bridge.destinations.dhis2.tracker import Objects, TrackerDestination
from cht_bridge.errors import ConfigError

SETTINGS = TrackerSettings(
    kind="tracker", id_scheme="UID", dry_run=False, program="ChtPregnan1", program_stage="ChtPregReg1",
    org_unit_place=None, org_unit_table=None, org_unit_field="ou", data_values=(("AncWeeks004", "weeks"),),
    tracked_entity=TrackedEntityRule("nEenWmSyUEp", "person", (("w75KJ2mc4zz", "name"),)),
)  # fmt: skip


def destination() -> TrackerDestination:
    return TrackerDestination(requests.Session(), "http://127.0.0.1:9", "/api", SETTINGS, conn_id="dhis2")


def test_a_report_becomes_a_tracked_entity_an_enrollment_and_an_event_with_derived_uids():
    d = destination()
    objects = d.objects("report-1", {"ou": "DiszpKrYNg8", "person": "woman-1", "name": "Jane", "weeks": 12,
                                     "occurred_at": 1714521600000})  # fmt: skip
    assert isinstance(objects, Objects)
    te, enrollment, event = objects.tracked_entity, objects.enrollment, objects.event
    assert te == {"trackedEntity": uids.tracked_entity_uid("woman-1"), "trackedEntityType": "nEenWmSyUEp",
                  "orgUnit": "DiszpKrYNg8", "attributes": [{"attribute": "w75KJ2mc4zz", "value": "Jane"}]}  # fmt: skip
    assert enrollment["enrollment"] == uids.enrollment_uid("ChtPregnan1", "woman-1")
    assert enrollment["enrolledAt"] == "2024-05-01T00:00:00.000" and enrollment["status"] == "ACTIVE"
    assert event["event"] == uids.event_uid("ChtPregnan1", "report-1") == objects.main_uid
    assert event["enrollment"] == enrollment["enrollment"] and event["dataValues"] == [
        {"dataElement": "AncWeeks004", "value": "12"}
    ]
    assert d.objects("report-2", {"ou": "DiszpKrYNg8", "person": ""}) == (
        "no person: the payload field 'person' (tracked_entity.id) is empty"
    )
    assert d.objects("report-3", {"person": "w"}) == "no org unit: the payload field 'ou' (org_unit.field) is empty"
    d.close()


def test_each_document_gets_its_objects_errors_and_quoted_data_values_are_dropped():
    d = destination()
    a = d.objects("a", {"ou": "DiszpKrYNg8", "person": "p-a", "occurred_at": "2024-05-01"})
    b = d.objects("b", {"ou": "DiszpKrYNg8", "person": "p-b", "occurred_at": "2024-05-01"})
    report = {"status": "ERROR", "validationReport": {"errorReports": [
        {"errorCode": "E1064", "trackerType": "TRACKED_ENTITY", "uid": b.tracked_entity["trackedEntity"],
         "message": "Non-unique attribute value `Jane Doe` for attribute `w75KJ2mc4zz`"}]}}  # fmt: skip
    results = d._read_report([(0, a), (1, b)], json.loads(json.dumps(report)), 409, False)
    assert results[0].ok and results[0].destination_id == a.main_uid
    assert not results[1].ok and not results[1].retryable
    assert results[1].error == (
        f"HTTP 409: DHIS2 refused it: E1064 TRACKED_ENTITY {b.tracked_entity['trackedEntity']}: "
        "Non-unique attribute value `…` for attribute `w75KJ2mc4zz`"
    )
    assert "Jane" not in results[1].error
    d.close()


def test_the_dhis2_kind_opens_the_tracker_destination_and_refuses_to_send_aggregates_document_by_document():
    destination = SimpleNamespace(
        type="dhis2", settings=SETTINGS, path="/api", conn_id="dhis2", batch_size=10, timeout=5.0
    )
    opened = registry.open_destination(requests.Session(), "http://127.0.0.1:9", destination)
    assert isinstance(opened, TrackerDestination) and opened.url == "http://127.0.0.1:9/api/tracker"
    opened.close()
    aggregate = SimpleNamespace(type="dhis2", settings=SimpleNamespace(kind="aggregate"), conn_id="dhis2")
    with pytest.raises(ConfigError, match="destination.dhis2.kind: 'aggregate' is not sent document by document"):
        registry.open_destination(requests.Session(), "http://127.0.0.1:9", aggregate)


def test_dates_are_sent_as_the_instances_local_time_without_offset():
    from dataclasses import replace as changed

    d = TrackerDestination(requests.Session(), "http://127.0.0.1:9", "/api",
                           changed(SETTINGS, time_zone="Africa/Nairobi"), conn_id="dhis2")  # fmt: skip
    one_am_in_nairobi = 1769898600000  # 2026-01-31T22:30:00Z = 2026-02-01 01:30 in Nairobi (UTC+3)
    for given in (one_am_in_nairobi, "2026-01-31T22:30:00.000Z", "2026-02-01T01:30:00+03:00"):
        objects = d.objects("r", {"ou": "DiszpKrYNg8", "person": "w", "occurred_at": given})
        assert objects.event["occurredAt"] == "2026-02-01T01:30:00.000", given
        assert objects.enrollment["enrolledAt"] == objects.enrollment["occurredAt"] == "2026-02-01T01:30:00.000"
    local = d.objects("r", {"ou": "DiszpKrYNg8", "person": "w", "occurred_at": "2026-02-01"})
    assert local.event["occurredAt"] == "2026-02-01", "a date (local already) is sent as given"
    d.close()


def test_two_reports_of_one_person_in_a_batch_give_one_enrollment_dated_by_the_earlier_and_the_first_org_unit():
    from cht_bridge.destinations.dhis2.tracker import _add

    d = destination()
    later = d.objects("b", {"ou": "OrgUnitBBBB", "person": "w", "name": "Jane B", "occurred_at": "2024-10-01"})
    earlier = d.objects("a", {"ou": "OrgUnitAAAA", "person": "w", "name": "Jane", "occurred_at": "2024-05-01"})
    payload = {"trackedEntities": [], "enrollments": [], "events": []}
    _add(payload, later)
    _add(payload, earlier)
    (te,), (enrollment,) = payload["trackedEntities"], payload["enrollments"]
    assert enrollment["enrolledAt"] == enrollment["occurredAt"] == "2024-05-01"
    assert te["orgUnit"] == "OrgUnitBBBB" and enrollment["orgUnit"] == "OrgUnitBBBB"  # the first report's
    assert te["attributes"] == [{"attribute": "w75KJ2mc4zz", "value": "Jane"}]  # the latest report's
    assert later.tracked_entity["orgUnit"] == "OrgUnitBBBB", "the documents' own objects are left as they were"
    d.close()
