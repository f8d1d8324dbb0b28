"""The oracle of ``bench/matching_oracle.py``: its field grades order agreement as they say, a
namesake no field tells apart is found (and one a field tells apart is not), and a pattern counts
as "the model loses it" only when its errors are far fewer than the model predicts."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from bench.matching_oracle import (
    Index,
    Side,
    at_least,
    dob_grade,
    grades,
    names_grade,
    namesake,
    one_edit,
    poisson_at_most,
)
from cht_bridge.matching.records import Person


def test_one_edit_is_one_keystroke() -> None:
    assert one_edit("hassan", "hasan") and one_edit("hasan", "hassan")  # letter left out / doubled
    assert one_edit("amina", "anima") is False  # two letters apart
    assert one_edit("amina", "aimna")  # neighbours swapped
    assert one_edit("amina", "amino")
    assert one_edit("amina", "amina") and not one_edit("amina", "aminaaa")


def test_names_pair_one_to_one_and_two_names_written_as_one() -> None:
    assert names_grade(["amina", "hassan", "juma"], ["amina", "hasan", "hassan"]) == (2, 2, -1)
    assert names_grade(["amina", "hasan"], ["amina", "hassan"]) == (2, 1, 0)
    assert names_grade(["adeolaolu"], ["adeola", "olu"]) == (1, 0, 0)
    assert names_grade(["amina"], ["amina", "juma"]) == (1, 1, -1)
    # more agreement sorts higher: exact beats a typo beats a name left over
    assert (2, 2, 0) > (2, 1, 0) > (1, 1, 0) > (1, 1, -1)


def test_date_grades_order_agreement_with_unknown_in_between() -> None:
    born = date(1990, 5, 7)
    same, swapped, year, near, unknown, far = (
        dob_grade(born, date(1990, 5, 7)),
        dob_grade(born, date(1990, 7, 5)),
        dob_grade(born, date(1990, 1, 1)),
        dob_grade(born, date(1992, 2, 2)),
        dob_grade(born, None),
        dob_grade(born, date(1984, 1, 1)),
    )
    assert same > swapped > year > near > unknown > far


def _run(rows: list[Person], cht: list[Person]) -> SimpleNamespace:
    people = Side(cht, "KE")
    return SimpleNamespace(rows=Side(rows, "KE"), cht=people, index=Index(people))


def test_a_namesake_no_field_tells_apart_is_found_and_one_the_date_tells_apart_is_not() -> None:
    truth = Person(id="t", given_name="amina", family_name="juma", date_of_birth="1990-05-07", place="hh-1")
    rival = Person(id="r", given_name="amina", family_name="juma", date_of_birth="1985-03-02", place="hh-1")
    stranger = Person(id="s", given_name="amina", family_name="odhiambo", place="hh-1")
    no_date = Person(id="row", given_name="amina", family_name="juma", place="hh-1")
    with_date = Person(id="row", given_name="amina", family_name="juma", date_of_birth="1990-05-07", place="hh-1")
    assert namesake(_run([no_date], [truth, rival, stranger]), 0, "t") == "r"
    assert namesake(_run([with_date], [truth, rival, stranger]), 0, "t") is None
    # the same, seen through the grades: the rival is as good as the truth on every field the row has
    run = _run([no_date], [truth, rival])
    assert at_least(grades(run.rows, 0, run.cht, 1), grades(run.rows, 0, run.cht, 0))


def test_a_new_row_is_undecidable_only_when_someone_agrees_on_every_field_it_has() -> None:
    existing = Person(id="x", given_name="kofi", family_name="mensah", date_of_birth="1970-01-01", place="v1")
    assert namesake(_run([Person(id="row", given_name="kofi", family_name="mensah", place="v1")], [existing]), 0, None)
    other_village = Person(id="row", given_name="kofi", family_name="mensah", place="v2")
    assert namesake(_run([other_village], [existing]), 0, None) is None
    a_name_more = Person(id="row", given_name="kofi ama", family_name="mensah", place="v1")
    assert namesake(_run([a_name_more], [existing]), 0, None) is None


def test_the_model_loses_a_pattern_only_when_its_errors_are_far_below_the_prediction() -> None:
    assert poisson_at_most(0, 3.0) == pytest.approx(0.0498, abs=1e-4)  # 0 seen, 3 predicted: (b)
    assert poisson_at_most(0, 1.0) > 0.05  # 0 seen, 1 predicted: nothing shown, (c)
    assert poisson_at_most(5, 5.7) > 0.05 and poisson_at_most(300, 310.0) > 0.05  # large means stay finite
    assert poisson_at_most(0, 0.0) == 1.0
