"""A reverse pipeline's list row may say its date of birth is an estimate (a mapped
``person.date_of_birth_estimated``: a CSV ``birthdate_estimated`` column, a REST API's flag): the
matcher then compares its year only, a person created from it says so the way CHT's form does
(``date_of_birth_method: approx``), and the review question marks estimated dates."""

from __future__ import annotations

import pytest

from cht_bridge.errors import ConfigError
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.review import _born
from cht_bridge.reverse.run import incoming_person, new_person
from cht_bridge.state.inbound import RECEIVED, InboundRow

BASE = {
    "name": "tracing",
    "start_date": "2026-01-01",
    "source": {"type": "csv", "folder": "include/lists/contact_tracing", "id_field": "contact_id"},
    "places": {"table": "include/places/facilities.csv", "key": "place"},
    "target": {"conn_id": "cht", "form": "CONTACT_TRACE"},
}
MAPPING = {
    "person.given_name": "doc.given_name",
    "person.date_of_birth": "doc.date_of_birth",
    "person.date_of_birth_estimated": {"path": "doc.birthdate_estimated", "optional": True},
    "place": "doc.facility_code",
}


def _row(flag: object) -> InboundRow:
    person = {"given_name": "Grace Akinyi", "date_of_birth": "1991-08-17", "date_of_birth_estimated": flag}
    return InboundRow("tracing", "c-1", "v1", RECEIVED, record={"person": person}, place_id="hc-1")


def test_the_flag_is_a_person_field_a_pipeline_may_map() -> None:
    assert parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml").name == "tracing"
    with pytest.raises(ConfigError, match="unknown person field"):
        parse_reverse_pipeline({**BASE, "mapping": {**MAPPING, "person.birth_estimated": "doc.x"}}, file="t.yaml")


@pytest.mark.parametrize(
    ("flag", "year_only"), [("true", True), (True, True), ("1", True), ("no", False), (None, False), ("??", False)]
)
def test_a_flagged_row_is_matched_on_its_year_and_creates_an_approx_person(flag: object, year_only: bool) -> None:
    pipeline = parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml")
    person = incoming_person(_row(flag), "c-1", pipeline)
    assert person.date_of_birth == ("1991-01-01" if year_only else "1991-08-17")
    body = new_person(pipeline, _row(flag))
    assert body["date_of_birth"] == "1991-08-17"  # as the list wrote it, as CHT's form keeps an estimate
    assert body.get("date_of_birth_method") == ("approx" if year_only else None)


def test_a_fhir_birth_date_to_the_month_is_an_estimate() -> None:
    pipeline = parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml")
    row = _row(None)
    row.record["person"]["date_of_birth"] = "1991-08"
    assert incoming_person(row, "c-1", pipeline).date_of_birth == "1991-01-01"
    body = new_person(pipeline, row)
    assert (body["date_of_birth"], body["date_of_birth_method"]) == ("1991-01-01", "approx")


def test_the_question_marks_an_estimated_date() -> None:
    assert _born("1991-08-17", "approx") == "1991-08-17 (estimated, year only compared)"
    assert _born("1991-08-17", "calendar") == "1991-08-17"
    assert _born(None, "approx") is None
