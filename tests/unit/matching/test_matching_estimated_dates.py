"""Estimated dates of birth as CHT and EMRs write them.

CHT's person form turns an entered age into the entry day's month and day that many years back and
says so only in ``date_of_birth_method: approx``; EMRs carry a birthdate-estimated flag. Such a
date keeps its year only (the model's estimated kind, 1 January), so an estimate is compared as an
estimate and not as an exact date that happens to be wrong. The generators write estimates that
way (and year typos on the list side), deterministically per seed.
"""

from __future__ import annotations

import csv
from datetime import date

import pytest

from cht_bridge.matching import MatchConfig, Person, from_cht_person, match
from cht_bridge.matching.csv_io import read_people, write_people
from cht_bridge.matching.records import clean_estimated
from standins.populations import CHT_FORM_SHARE, DateDraws, population
from standins.populations_west import west_population


def _cht(person_id: str, name: str, born: str, method: object, household: str) -> Person:
    doc = {"_id": person_id, "name": name, "sex": "female", "date_of_birth": born, "parent": {"_id": household}}
    if method is not None:
        doc["date_of_birth_method"] = method
    return from_cht_person(doc)


@pytest.mark.parametrize("method", ["approx", " APPROX ", "Approx"])
def test_a_cht_person_with_an_approx_date_keeps_its_year_only(method: str) -> None:
    person = _cht("c", "Grace Akinyi", "1991-08-17", method, "hh-1")
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-01-01", True)


@pytest.mark.parametrize("method", [None, "", "calendar", "approximately-ish", 3, ["approx"], {"a": 1}])
def test_a_cht_person_without_an_approx_flag_keeps_its_date(method: object) -> None:
    person = _cht("c", "Grace Akinyi", "1991-08-17", method, "hh-1")
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-08-17", False)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1991", "1991-01-01"), ("1991-08", "1991-01-01"), (" 1991-12 ", "1991-01-01")]
)
def test_a_date_written_to_the_year_or_month_is_an_estimate(raw: str, expected: str) -> None:
    """FHIR's partial dates: OpenMRS FHIR2 writes an estimated birthdate to the month or the year
    (a ``1991-08`` was lost before: no format read it)."""
    person = Person("p", date_of_birth=raw)
    assert (person.date_of_birth, person.date_of_birth_estimated) == (expected, True)
    assert Person("p", date_of_birth="1991-13").date_of_birth is None


def test_a_flag_without_a_date_is_no_estimate() -> None:
    assert Person("p", date_of_birth=None, date_of_birth_estimated=True).date_of_birth_estimated is False
    assert Person("p", date_of_birth="not a date", date_of_birth_estimated="approx").date_of_birth is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), ("TRUE", True), (" yes ", True), ("1", True), (1, True), (1.0, True), ("approx", True)]
    + [(False, False), ("false", False), ("no", False), ("0", False), (0, False), (None, False), ("", False)]
    + [("maybe", False), ("2", False), (float("nan"), False), (object(), False)],
)
def test_flag_values(raw: object, expected: bool) -> None:
    assert clean_estimated(raw) is expected


def _csv(path, header: list[str], *rows: list[str]):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return {p.id: p for p in read_people(path)}


def test_csv_rows_flagged_birthdate_estimated_keep_their_year_only(tmp_path) -> None:
    people = _csv(
        tmp_path / "in.csv",
        ["id", "name", "date_of_birth", "Birthdate_Estimated"],
        ["t", "Grace Akinyi", "1991-08-17", "true"],
        ["one", "Grace Akinyi", "17/08/1991", "1"],
        ["yes", "Grace Akinyi", "1991-08-17", "Yes"],
        ["f", "Grace Akinyi", "1991-08-17", "false"],
        ["zero", "Grace Akinyi", "1991-08-17", "0"],
        ["junk", "Grace Akinyi", "1991-08-17", "perhaps?"],
        ["empty", "Grace Akinyi", "1991-08-17", ""],
    )
    assert {k: p.date_of_birth for k, p in people.items()} == {
        "t": "1991-01-01",
        "one": "1991-01-01",
        "yes": "1991-01-01",
        "f": "1991-08-17",
        "zero": "1991-08-17",
        "junk": "1991-08-17",
        "empty": "1991-08-17",
    }


def test_csv_rows_with_chts_date_of_birth_method_and_the_round_trip(tmp_path) -> None:
    people = _csv(
        tmp_path / "cht.csv",
        ["id", "name", "date_of_birth", "date_of_birth_method"],
        ["a", "Grace Akinyi", "1991-08-17", "approx"],
        ["c", "Grace Akinyi", "1991-08-17", "calendar"],
    )
    assert (people["a"].date_of_birth, people["a"].date_of_birth_estimated) == ("1991-01-01", True)
    assert (people["c"].date_of_birth, people["c"].date_of_birth_estimated) == ("1991-08-17", False)
    write_people(tmp_path / "out.csv", list(people.values()))
    assert read_people(tmp_path / "out.csv") == list(people.values())


def _evidence(row: Person, existing: Person) -> str:
    decided = match([row], [existing], MatchConfig())[0]
    return next(text for name, text, _ in decided.candidates[0].evidence if name == "date_of_birth")


def test_a_cht_estimate_meets_a_list_estimate_of_the_same_year_as_an_estimate() -> None:
    cht = _cht("c", "Grace Akinyi", "1953-07-15", "approx", "hh-1")
    row = Person("r", "Grace", "Akinyi", "F", "1953", date_of_birth_estimated="true")
    assert _evidence(row, cht).startswith("same estimated birth year (dates marked estimated or 1 January)")
    exact = Person("r", "Grace", "Akinyi", "F", "1953-11-02")
    assert _evidence(exact, cht).startswith("same birth year (one side knows only the year)")


@pytest.fixture(scope="module")
def background() -> list[Person]:
    return population(2000, 10, seed=5).existing


def test_a_true_pair_with_a_cht_estimate_is_not_new_and_beats_a_namesake(background) -> None:
    """The CHT form wrote 1953-07-15 for "about 72"; a namesake in another household was born in
    March 1953. Read as exact, both dates are "same year" as the list's estimate and the namesake
    (a shorter name, closer to the row's) came first; read as an estimate the true person does."""
    existing = [
        *background,
        _cht("true", "Grace Akinyi Otieno", "1953-07-15", "approx", "hh-a"),
        _cht("namesake", "Grace Otieno", "1953-03-02", None, "hh-b"),
    ]
    decided = match([Person("r", "Grace", "Otieno", "F", "1953", date_of_birth_estimated="yes")], existing)[0]
    assert decided.decision != "new"
    assert decided.candidates[0].existing_id == "true"


def test_the_cht_form_writes_an_age_as_the_entry_day_years_back_flagged() -> None:
    draws = DateDraws.for_seed(1)
    written = [draws.cht_form(f"p{i}", "1980-01-01", date(1980, 9, 30), date(2026, 1, 1)) for i in range(300)]
    flagged = [iso for iso, estimated in written if estimated]
    assert abs(len(flagged) / len(written) - CHT_FORM_SHARE) < 0.1
    assert all(iso == "1980-01-01" for iso, estimated in written if not estimated)
    # the age on the entry day, back from that day: born 30 September 1980, so 1980 or, before
    # the birthday, 1981; the list keeps the 1 January estimate
    assert {iso[:4] for iso in flagged} == {"1980", "1981"}
    assert len({iso[5:] for iso in flagged}) > 50
    assert set(draws.listed.values()) == {"1980-01-01"} and len(draws.listed) == len(flagged)


@pytest.mark.parametrize(
    "generate", [lambda seed: population(1500, 600, seed=seed), lambda seed: west_population(1500, 600, seed=seed)]
)
def test_generators_write_cht_estimates_flagged_and_list_year_typos_deterministically(generate, tmp_path) -> None:
    first, again, other = generate(3), generate(3), generate(4)
    assert first == again and first != other
    flagged = [p for p in first.existing if p.date_of_birth_estimated]
    estimates = [p for p in first.existing if p.date_of_birth and p.date_of_birth.endswith("-01-01")]
    assert 0.5 < len(flagged) / len(estimates) < 0.85  # the rest are 1 January, unflagged
    write_people(tmp_path / "existing.csv", first.existing)
    with open(tmp_path / "existing.csv", encoding="utf-8") as handle:
        methods = [row["date_of_birth_method"] for row in csv.DictReader(handle)]
    assert methods.count("approx") == len(flagged)
    # year typos: the list row of a person whose CHT date is exact has the same day and month and
    # a year one digit and 3 or more years off (age re-estimates move 1-2 years, far guesses write 1 January)
    by_id = {p.id: p for p in first.existing}
    typos = 0
    for row in first.incoming:
        person = by_id.get(first.truth[row.id] or "")
        if person and row.date_of_birth and person.date_of_birth and not person.date_of_birth.endswith("-01-01"):
            a, b = person.date_of_birth, row.date_of_birth
            digits = sum(x != y for x, y in zip(a[:4], b[:4], strict=True))
            typos += a[4:] == b[4:] and digits == 1 and abs(int(a[:4]) - int(b[:4])) >= 3
    assert typos >= 2
