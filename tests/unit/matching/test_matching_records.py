"""Cleaning makes CHT and EMR values comparable; CHT person docs become Persons."""

from __future__ import annotations

import pytest

from cht_bridge.matching import Person, from_cht_person, person_from_name
from cht_bridge.matching.records import clean_date, clean_sex


def test_names_are_lower_cased_without_accents_punctuation_or_titles() -> None:
    person = Person("p1", given_name="Mrs. Grâce  N'Akinyi", family_name="OTIENO-Ouma")
    assert person.given_name == "grace nakinyi"
    assert person.family_name == "otieno ouma"
    assert person.name_tokens == ["grace", "nakinyi", "otieno", "ouma"]


def test_token_order_does_not_change_name_tokens() -> None:
    assert Person("a", "Akinyi Grace", "Otieno").name_tokens == Person("b", "Otieno", "Grace Akinyi").name_tokens


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("M", "male"), ("f", "female"), ("Male", "male"), ("FEMALE", "female"), ("1", "male"), ("2", "female"),
     ("2.0", "female"), ("", None), ("other", None), (None, None)],
)  # fmt: skip
def test_sex_codings(raw: object, expected: str | None) -> None:
    assert clean_sex(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1990-03-05", "1990-03-05"), ("05/03/1990", "1990-03-05"), ("1990-03-05T00:00:00Z", "1990-03-05"),
     ("1990", "1990-01-01"), ("", None), ("31/02/1990", None), ("soon", None)],
)  # fmt: skip
def test_dates_of_birth(raw: str, expected: str | None) -> None:
    assert clean_date(raw) == expected


def test_empty_values_become_none() -> None:
    person = Person("p", given_name="", family_name=" ", sex="", date_of_birth="", phone="", place="", identifier="")
    assert (person.given_name, person.family_name, person.sex, person.date_of_birth) == (None, None, None, None)
    assert (person.phone, person.place, person.identifier, person.area) == (None, None, None, ())


def test_one_name_string_is_split_like_cht() -> None:
    person = person_from_name("c", "Mary Wanjiku Kamau")
    assert (person.given_name, person.family_name) == ("mary wanjiku", "kamau")


def test_cht_person_document() -> None:
    doc = {
        "_id": "abc",
        "type": "person",
        "name": "Grace Akinyi Otieno",
        "sex": "female",
        "date_of_birth": "1990-03-05",
        "phone": "+254712345678",
        "national_id": "12 345 678",
        "parent": {"_id": "household-1", "parent": {"_id": "chw-area-1", "parent": {"_id": "facility-1"}}},
    }
    person = from_cht_person(doc, identifier_field="national_id")
    assert person.id == "abc"
    assert person.place == "household-1"
    assert person.area == ("household-1", "chw-area-1", "facility-1")
    assert person.identifier == "12345678"
    assert (person.sex, person.date_of_birth, person.phone) == ("female", "1990-03-05", "+254712345678")
    assert from_cht_person(doc).identifier is None
