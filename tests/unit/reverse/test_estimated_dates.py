"""A reverse pipeline's list row may say its date of birth is an estimate (a mapped
``person.date_of_birth_estimated``: a CSV ``birthdate_estimated`` column, a REST API's flag): the
matcher keeps the date as written, marked, a person created from it says so the way CHT's form
does (``date_of_birth_method: approx``), and the review question marks estimated dates. All three
read the flag one way (``cht_bridge.flags.flag``)."""

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
    ("flag", "estimated"),
    [("true", True), (True, True), ("1", True), (1.0, True), ("1.0", True)]
    + [("no", False), (None, False), ("??", False), (0.0, False)],
)
def test_the_matcher_the_new_person_and_the_question_read_the_flag_alike(flag: object, estimated: bool) -> None:
    pipeline = parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml")
    person = incoming_person(_row(flag), "c-1", pipeline)
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-08-17", estimated)
    body = new_person(pipeline, _row(flag))
    assert body["date_of_birth"] == "1991-08-17"  # as the list wrote it, as CHT's form keeps an estimate
    assert body.get("date_of_birth_method") == ("approx" if estimated else None)
    assert _born("1991-08-17", flag) == ("1991-08-17 (estimated)" if estimated else "1991-08-17")


def test_a_fhir_birth_date_to_the_month_is_an_estimate() -> None:
    pipeline = parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml")
    row = _row(None)
    row.record["person"]["date_of_birth"] = "1991-08"
    person = incoming_person(row, "c-1", pipeline)
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-08-01", True)
    body = new_person(pipeline, row)
    assert (body["date_of_birth"], body["date_of_birth_method"]) == ("1991-08-01", "approx")


def test_a_date_of_birth_after_today_creates_no_date() -> None:
    pipeline = parse_reverse_pipeline({**BASE, "mapping": MAPPING}, file="tracing.yaml")
    row = _row("true")
    row.record["person"]["date_of_birth"] = "2091-08"
    body = new_person(pipeline, row)
    assert "date_of_birth" not in body and "date_of_birth_method" not in body


def test_the_question_marks_an_estimated_date() -> None:
    assert _born("1991-08-17", "approx") == "1991-08-17 (estimated)"
    assert _born("1991-08-17", "") == "1991-08-17"
    # a date written to the month (FHIR's) is an estimate by its precision, flag or not
    assert _born("1991-08", None) == "1991-08 (estimated)"
    assert _born("1991-08T00:00", None) == "1991-08T00:00 (estimated)"
    assert _born(None, "approx") is None
