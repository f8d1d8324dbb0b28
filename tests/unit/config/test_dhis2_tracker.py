"""``destination.dhis2`` with ``kind: tracker`` is checked at parse time, every problem under its key."""

from __future__ import annotations

import pytest
import yaml

from cht_bridge.config import load_pipeline
from cht_bridge.config.kinds.dhis2_tracker import TrackedEntityRule, TrackerSettings
from cht_bridge.errors import ConfigError

BASE = {
    "name": "tracker_example",
    "start_date": "2026-01-01",
    "cht": {"conn_id": "cht_local"},
    "relevant_to": "doc.form === 'assessment'",
    "mapping": {"id": "doc._id"},
}


def load(tmp_path, dhis2: dict):
    path = tmp_path / "tracker_example.yaml"
    path.write_text(yaml.safe_dump({**BASE, "destination": {"type": "dhis2", "conn_id": "dhis2", "dhis2": dhis2}}))
    return load_pipeline(path)


def problems(tmp_path, dhis2: dict) -> str:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, dhis2)
    return str(refused.value)


def test_an_event_program_and_a_tracker_program_become_their_settings(tmp_path):
    event = load(tmp_path, {"kind": "tracker", "program": "ChtAssess01", "program_stage": "ChtAssessS1",
                            "org_unit": {"place": "facility_id", "table": "include/places/dhis2_org_units.csv"},
                            "data_values": {"AsmTempC001": "temperature"}})  # fmt: skip
    assert event.destination.path == "/api"
    s = event.destination.settings
    assert isinstance(s, TrackerSettings)
    assert (s.program, s.program_stage, s.org_unit_place, s.org_unit_field) == (
        "ChtAssess01",
        "ChtAssessS1",
        "facility_id",
        None,
    )
    assert s.data_values == (("AsmTempC001", "temperature"),) and s.tracked_entity is None and s.status == "COMPLETED"
    tracker = load(tmp_path, {"kind": "tracker", "program": "ChtPregnan1", "org_unit": {"field": "org_unit"},
                              "tracked_entity": {"type": "nEenWmSyUEp", "id": "patient.uuid",
                                                 "attributes": {"w75KJ2mc4zz": "patient.name"}}})  # fmt: skip
    rule = tracker.destination.settings.tracked_entity
    assert rule == TrackedEntityRule("nEenWmSyUEp", "patient.uuid", (("w75KJ2mc4zz", "patient.name"),), None)
    assert tracker.destination.settings.program_stage is None  # a tracker program may only enroll


def test_each_bad_key_is_named(tmp_path):
    text = problems(tmp_path, {"kind": "tracker", "program": "not-a-uid", "dry_run": True, "status": "DONE",
                               "org_unit": {"place": "facility id", "table": "places.txt", "other": 1},
                               "data_values": {"1badUid": "x"}, "tracked_entity": {"type": "nEenWmSyUEp"},
                               "api_version": 37, "surprise": 1})  # fmt: skip
    for expected in (
        "destination.dhis2.program: must be a DHIS2 UID",
        "destination.dhis2.dry_run: not for kind tracker",
        "destination.dhis2.status: must be one of ACTIVE, COMPLETED",
        "destination.dhis2.org_unit.place: must name a field of the mapped payload",
        "destination.dhis2.org_unit.table: must be the path of a CSV file",
        "destination.dhis2.org_unit.other: unknown key",
        "destination.dhis2.data_values.1badUid: must be a DHIS2 UID",
        "destination.dhis2.data_values: needs a program_stage",
        "destination.dhis2.tracked_entity.id: required",
        "destination.dhis2.api_version: must be a DHIS2 API version from 38",
        "destination.dhis2.surprise: unknown key for kind tracker",
    ):
        assert expected in text, (expected, text)


def test_an_event_program_needs_its_stage_and_an_org_unit_source(tmp_path):
    text = problems(tmp_path, {"kind": "tracker", "program": "ChtAssess01"})
    assert "destination.dhis2.program_stage: required for an event program" in text
    assert "destination.dhis2.org_unit: required" in text
    both = problems(tmp_path, {"kind": "tracker", "program": "ChtAssess01", "program_stage": "ChtAssessS1",
                               "org_unit": {"field": "ou", "place": "p", "table": "t.csv"}})  # fmt: skip
    assert "destination.dhis2.org_unit: either field, or place with table, not both" in both


def test_codes_are_accepted_under_the_code_id_scheme(tmp_path):
    p = load(tmp_path, {"kind": "tracker", "id_scheme": "CODE", "program": "CHT_ASSESSMENT", "program_stage": "ASSESS",
                        "org_unit": {"field": "org_unit_code"}})  # fmt: skip
    assert p.destination.settings.program == "CHT_ASSESSMENT"
    assert "must be the object's code" in problems(
        tmp_path,
        {"kind": "tracker", "id_scheme": "CODE", "program": "A,B", "program_stage": "S", "org_unit": {"field": "o"}},
    )


def test_the_attribute_id_scheme_is_refused_for_it_cannot_name_the_attribute(tmp_path):
    text = problems(tmp_path, {"kind": "tracker", "id_scheme": "ATTRIBUTE", "program": "P", "program_stage": "S",
                               "org_unit": {"field": "o"}})  # fmt: skip
    assert "destination.dhis2.id_scheme: ATTRIBUTE needs the attribute's UID" in text


def test_the_time_zone_is_the_instances_default_utc_and_checked_as_the_aggregate_kinds(tmp_path):
    block = {"kind": "tracker", "program": "ChtAssess01", "program_stage": "ChtAssessS1", "org_unit": {"field": "o"}}
    assert load(tmp_path, block).destination.settings.time_zone == "UTC"
    assert load(tmp_path, {**block, "time_zone": "Africa/Nairobi"}).destination.settings.time_zone == "Africa/Nairobi"
    text = problems(tmp_path, {**block, "time_zone": "Mars/Olympus"})
    assert "destination.dhis2.time_zone: must be an IANA time zone such as Africa/Nairobi" in text
