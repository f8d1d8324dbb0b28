"""Estimated dates of birth as CHT and EMRs write them.

CHT's person form turns an entered age into the entry day's month and day that many years back and
says so only in ``date_of_birth_method: approx``; EMRs carry a birthdate-estimated flag. A
``Person`` keeps the date as written with the flag: equal written dates are the same date (a
copied estimate), and where dates are compared by year an estimate is 1 January of its likely year
(the model's estimated kind). The generators write estimates that way (and year typos on the list
side), deterministically per seed.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date

import pytest

from cht_bridge.matching import MatchConfig, Person, from_cht_person, match
from cht_bridge.matching.csv_io import read_people, write_people
from cht_bridge.matching.deterministic import DeterministicIndex
from cht_bridge.matching.features import Frequencies
from cht_bridge.matching.model import load_model, upgraded
from cht_bridge.matching.records import clean_date, date_is_estimate, estimated_birth
from standins.populations import CHT_FORM_SHARE, DateDraws, population
from standins.populations_west import west_population


def _cht(person_id: str, name: str, born: str, method: object, household: str, **doc: object) -> Person:
    doc = {"_id": person_id, "name": name, "sex": "female", "date_of_birth": born, "parent": {"_id": household}, **doc}
    if method is not None:
        doc["date_of_birth_method"] = method
    return from_cht_person(doc)


@pytest.mark.parametrize("method", ["approx", " APPROX ", "Approx"])
def test_a_cht_person_with_an_approx_date_keeps_it_as_written_marked(method: str) -> None:
    person = _cht("c", "Grace Akinyi", "1991-08-17", method, "hh-1")
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-08-17", True)
    assert person.birth_compared == date(1991, 1, 1)


@pytest.mark.parametrize("method", [None, "", "approximately-ish", 3, ["approx"], {"a": 1}])
def test_a_cht_person_without_an_approx_flag_keeps_its_date(method: object) -> None:
    person = _cht("c", "Grace Akinyi", "1991-08-17", method, "hh-1")
    assert (person.date_of_birth, person.date_of_birth_estimated) == ("1991-08-17", False)
    assert person.birth_compared == date(1991, 8, 17)


def test_an_estimate_is_in_the_year_before_its_written_date() -> None:
    """The form counts whole years back from the entry day: "age 30" entered on 5 January 2024 is
    1994-01-05, a birth between January 1993 and January 1994, most likely in 1993."""
    assert estimated_birth(date(1994, 1, 5)) == date(1993, 1, 1)
    assert estimated_birth(date(1991, 8, 17)) == date(1991, 1, 1)
    assert estimated_birth(date(1991, 7, 3)) == date(1991, 1, 1)
    assert estimated_birth(date(1991, 6, 30)) == date(1990, 1, 1)
    assert estimated_birth(date(1991, 1, 1)) == date(1991, 1, 1)  # a year's estimate already
    assert _cht("c", "Grace", "1994-01-05", "approx", "hh-1").birth_compared == date(1993, 1, 1)


def test_the_likely_year_is_right_more_often_than_the_written_one() -> None:
    """Over the generator's CHT-form estimates of a person born 30 September 1980 (entry days
    uniform), the written year is 1980 only when entered after the birthday; the likely year mostly."""
    draws = DateDraws.for_seed(2)
    written = [draws.cht_form(f"p{i}", "1980-01-01", date(1980, 9, 30), date(2026, 1, 1)) for i in range(600)]
    flagged = [date.fromisoformat(iso) for iso, estimated in written if estimated]
    as_written = sum(day.year == 1980 for day in flagged) / len(flagged)
    likely = sum(estimated_birth(day).year == 1980 for day in flagged) / len(flagged)
    assert as_written < 0.4 and likely > 0.65


def test_months_entered_with_the_age_pin_the_date_to_a_month() -> None:
    """An infant's "3 months" is counted back in months: the date is not the entry day's month and
    day (``reported_date``), is within a month of the birth, and is compared as a date."""
    entered = int(date(2026, 2, 10).strftime("%s")) * 1000 + 12 * 3600 * 1000
    months = _cht("c", "Baraka", "2025-11-10", "approx", "hh-1", reported_date=entered)
    years = _cht("c", "Baraka", "2024-02-10", "approx", "hh-1", reported_date=entered)
    unknown = _cht("c", "Baraka", "2025-11-10", "approx", "hh-1", reported_date="not a time")
    assert (months.date_of_birth, months.date_of_birth_estimated) == ("2025-11-10", False)
    assert (years.date_of_birth_estimated, unknown.date_of_birth_estimated) == (True, True)


@pytest.mark.parametrize(
    ("raw", "written"),
    [("1991", "1991-01-01"), (1991, "1991-01-01"), ("1991-08", "1991-08-01"), (" 1991-12 ", "1991-12-01")]
    + [("1991-08T00:00", "1991-08-01"), ("1991-08 x", "1991-08-01")],
)
def test_a_date_written_to_the_year_or_month_is_an_estimate(raw: object, written: str) -> None:
    """FHIR's partial dates: OpenMRS FHIR2 writes an estimated birthdate to the month or the year;
    however written, the date read is its first day and it is marked estimated."""
    person = Person("p", date_of_birth=raw)
    assert (person.date_of_birth, person.date_of_birth_estimated) == (written, True)
    assert date_is_estimate(raw, None)
    assert Person("p", date_of_birth="1991-13").date_of_birth is None


def test_a_cht_estimate_sent_to_the_month_and_read_back_has_the_same_likely_year() -> None:
    """The forward FHIR pipeline sends CHT's 1990-04-17 ``approx`` as ``1990-04``; read back from
    the EMR it is 1990-04-01, estimated: both are most likely 1989."""
    cht = _cht("c", "Grace", "1990-04-17", "approx", "hh-1")
    assert cht.birth_compared == Person("r", date_of_birth="1990-04").birth_compared == date(1989, 1, 1)


def test_a_date_after_today_is_read_as_written() -> None:
    """The matcher's reading does not move with the day it runs (a benchmark's list dated after
    today would change its figures over time); only a person written to CHT refuses such a date
    (``tests/unit/reverse/test_estimated_dates.py``)."""
    assert clean_date("2091-08") == "2091-08-01" and clean_date("05/05/2031") == "2031-05-05"
    assert clean_date(date(2091, 1, 1)) == "2091-01-01"


def test_a_flag_without_a_date_is_no_estimate() -> None:
    assert Person("p", date_of_birth=None, date_of_birth_estimated=True).date_of_birth_estimated is False
    assert Person("p", date_of_birth="not a date", date_of_birth_estimated="approx").date_of_birth is None


@pytest.mark.parametrize("flag", [True, "TRUE", " yes ", "1", 1, 1.0, "1.0", "approx"])
def test_a_flag_read_as_yes_marks_the_date(flag: object) -> None:
    assert Person("p", date_of_birth="1991-08-17", date_of_birth_estimated=flag).date_of_birth_estimated is True


@pytest.mark.parametrize("flag", [False, "false", "no", "0", 0, None, "", "maybe", "2", float("nan"), object()])
def test_a_flag_read_as_no_keeps_the_date_unmarked(flag: object) -> None:
    assert Person("p", date_of_birth="1991-08-17", date_of_birth_estimated=flag).date_of_birth_estimated is False


def _csv(path, header: list[str], *rows: list[str]):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return {p.id: p for p in read_people(path)}


def test_csv_rows_flagged_birthdate_estimated_are_marked_and_keep_the_written_date(tmp_path) -> None:
    people = _csv(
        tmp_path / "in.csv",
        ["id", "name", "date_of_birth", "Birthdate_Estimated"],
        ["t", "Grace Akinyi", "1991-08-17", "true"],
        ["one", "Grace Akinyi", "17/08/1991", "1"],
        ["float", "Grace Akinyi", "1991-08-17", "1.0"],
        ["yes", "Grace Akinyi", "1991-08-17", "Yes"],
        ["f", "Grace Akinyi", "1991-08-17", "false"],
        ["zero", "Grace Akinyi", "1991-08-17", "0"],
        ["junk", "Grace Akinyi", "1991-08-17", "perhaps?"],
        ["empty", "Grace Akinyi", "1991-08-17", ""],
    )
    assert {p.date_of_birth for p in people.values()} == {"1991-08-17"}
    assert {k for k, p in people.items() if p.date_of_birth_estimated} == {"t", "one", "float", "yes"}


def test_csv_rows_with_chts_date_of_birth_method_and_the_round_trip(tmp_path) -> None:
    people = _csv(
        tmp_path / "cht.csv",
        ["id", "name", "date_of_birth", "date_of_birth_method"],
        ["a", "Grace Akinyi", "1991-08-17", "approx"],
        ["c", "Grace Akinyi", "1991-08-17", ""],
        ["y", "Grace Akinyi", "1991", ""],
    )
    assert (people["a"].date_of_birth, people["a"].date_of_birth_estimated) == ("1991-08-17", True)
    assert (people["c"].date_of_birth, people["c"].date_of_birth_estimated) == ("1991-08-17", False)
    assert (people["y"].date_of_birth, people["y"].date_of_birth_estimated) == ("1991-01-01", True)
    write_people(tmp_path / "out.csv", list(people.values()))
    again = read_people(tmp_path / "out.csv")
    assert again == list(people.values())
    assert [(p.date_of_birth, p.date_of_birth_estimated) for p in again] == [
        ("1991-08-17", True),
        ("1991-08-17", False),
        ("1991-01-01", True),
    ]


@pytest.fixture(scope="module")
def background() -> list[Person]:
    return population(2000, 10, seed=5, cht_dates=True).existing


def _decided(row: Person, existing: Person, background: list[Person]):
    return match([row], [*background, existing], MatchConfig())[0]


def _evidence(row: Person, existing: Person, background: list[Person]) -> str:
    decided = _decided(row, existing, background)
    top = next(c for c in decided.candidates if c.existing_id == existing.id)
    return next(text for name, text, _ in top.evidence if name == "date_of_birth")


def test_a_copied_cht_estimate_is_the_same_date_and_links(background) -> None:
    """The review's pair: CHT ``Grace Akinyi Otieno`` 1991-08-17 ``approx``; the EMR copied the date
    (our forward pipeline sends CHT's date as written). Main linked it (p 0.9985, "same date of
    birth"); read as a year only it went to review (p 0.87)."""
    cht = _cht("true", "Grace Akinyi Otieno", "1991-08-17", "approx", "hh-x1")
    for flag in (None, "true"):
        row = Person("r", "Grace", "Otieno", "F", "1991-08-17", date_of_birth_estimated=flag)
        decided = _decided(row, cht, background)
        assert (decided.decision, decided.existing_id) == ("link", "true")
        assert _evidence(row, cht, background).startswith("same date of birth")


def test_an_estimate_meets_a_different_date_at_the_estimated_levels(background) -> None:
    cht = _cht("c", "Grace Akinyi", "1994-01-05", "approx", "hh-1")  # born 1993, most likely
    same_year = Person("r", "Grace", "Akinyi", "F", "1993-06-12")
    assert _evidence(same_year, cht, background).startswith("same birth year (one side knows only the year)")
    listed = Person("r", "Grace", "Akinyi", "F", "1992", date_of_birth_estimated="true")
    assert _evidence(listed, cht, background).startswith("born 1-2 years apart, both dates estimated")
    exact = Person("r", "Grace", "Akinyi", "F", "1992-03-09")
    assert _evidence(exact, cht, background).startswith("born 1-2 years apart")
    # an entry day's month and day say nothing of the birthday
    birthday = Person("r", "Grace", "Akinyi", "F", "1992-01-05")
    assert not _evidence(birthday, cht, background).startswith("same birthday")


def test_a_copied_estimate_weighs_as_a_copied_date() -> None:
    """Equal written dates reach "same date" marked or not, so a date's frequency is counted within
    the kind of the level it reaches (1 January or not), not by its mark: counted as an estimate, a
    copied CHT ``approx`` date weighed 2.7 bits more than a copied exact one."""
    people = [Person(f"p{i}", date_of_birth=f"1990-0{1 + i % 9}-1{i % 10}") for i in range(10)]
    marked = [Person(f"m{i}", date_of_birth=f"1991-03-1{i}", date_of_birth_estimated="approx") for i in range(10)]
    years = [Person(f"y{i}", date_of_birth=f"19{60 + i}") for i in range(5)]
    plain = Frequencies([*people, *years, *[replace(p, date_of_birth_estimated=False) for p in marked]], [None] * 25)
    with_marked = Frequencies([*people, *years, *marked], [None] * 25)
    assert with_marked.date_tf("1991-03-10") == pytest.approx(plain.date_tf("1991-03-10"))
    assert with_marked.date_tf("1991-03-10") == pytest.approx(with_marked.tf("date_of_birth", "1991-03-10") * 0.8)
    assert with_marked.date_tf("1960-01-01") == pytest.approx(with_marked.tf("date_of_birth", "1960-01-01") * 0.2)


def test_an_old_model_file_compares_a_copied_estimate_as_the_same_date(background) -> None:
    """A model trained before dates were kept as written tests ``birth_month``/``birth_day`` at its
    first date level, where a marked date is now 1 January: read as it is now (``model.upgraded``),
    the copied estimate is "same date" under it too."""
    old = load_model()
    for comparison in old["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("label_for_charts") == "same 1 January (estimated) date":
                level["sql_condition"] = (
                    '"date_of_birth_l" = "date_of_birth_r" AND "birth_month_l" = 1 AND "birth_day_l" = 1'
                )
    assert upgraded(old) == load_model()
    cht = _cht("true", "Grace Akinyi Otieno", "1991-08-17", "approx", "hh-x1")
    row = Person("r", "Grace", "Otieno", "F", "1991-08-17")
    decided = match([row], [*background, cht], MatchConfig(model=old))[0]
    assert (decided.decision, decided.existing_id) == ("link", "true")
    top = decided.candidates[0]
    assert next(text for name, text, _ in top.evidence if name == "date_of_birth").startswith("same date of birth")


def test_a_date_before_1800_is_no_date() -> None:
    """A year-1 date marked estimated once stopped every run (its likely year was year 0)."""
    assert clean_date("0001-03-01") is None and clean_date("15/06/0001") is None and clean_date(date(1, 3, 1)) is None
    person = Person("r", "Grace", "Otieno", "F", "0001-03-01", date_of_birth_estimated=True)
    assert (person.date_of_birth, person.birth_compared) == (None, None)
    assert _cht("c", "Grace", "0001-03-01", "approx", "hh-1").date_of_birth is None
    assert clean_date("1800-01-01") == "1800-01-01"


def test_a_person_a_reverse_pipeline_wrote_keeps_its_estimate() -> None:
    """CHT stamps ``reported_date`` with the day a reverse pipeline created the person, which is no
    entry day of an age: the estimate is kept (it read as "months entered", an exact date)."""
    created = 1796464800000  # 2026-12-05, milliseconds
    assert _cht(
        "c", "Grace", "1991-08-01", "approx", "hh-1", reported_date=created, source_ref="x|1"
    ).date_of_birth_estimated
    assert not _cht("c", "Grace", "1991-08-01", "approx", "hh-1", reported_date=created).date_of_birth_estimated


def test_a_reported_date_in_seconds_says_nothing_of_the_entry_day() -> None:
    assert _cht("c", "Grace", "1991-08-17", "approx", "hh-1", reported_date=1796464800.0).date_of_birth_estimated
    assert (
        _cht("c", "Grace", "1991-08-17", "approx", "hh-1", reported_date=1796464800000).date_of_birth_estimated is False
    )


def test_phone_and_an_estimated_date_settle_nothing_deterministically() -> None:
    phone = "+254712345678"
    cht = _cht("c", "Grace Akinyi", "1991-08-17", "approx", "hh-1")
    exact = _cht("e", "Grace Akinyi", "1991-08-17", None, "hh-1")
    row = Person("r", "Grace", "Akinyi", "F", "1991-08-17", phone=phone)
    assert DeterministicIndex([cht], [phone], 3).find(row, phone) is None
    assert DeterministicIndex([exact], [phone], 3).find(row, phone).existing_ids == ("e",)
    marked = Person("r", "Grace", "Akinyi", "F", "1991-08-17", phone=phone, date_of_birth_estimated="yes")
    assert DeterministicIndex([exact], [phone], 3).find(marked, phone) is None


def test_a_true_pair_with_a_cht_estimate_is_not_new_nor_linked_to_a_namesake(background) -> None:
    """The CHT form wrote 1953-07-15 for "about 72"; a namesake in another household was born in
    March 1953; the list's own estimate is "1953". Both CHT dates are of the list's year, one side
    a year only: the date does not tell them apart (the model has no level for two estimates of one
    year but an equal written date), so the row is not new and is not linked to the namesake."""
    existing = [
        *background,
        _cht("true", "Grace Akinyi Otieno", "1953-07-15", "approx", "hh-a"),
        _cht("namesake", "Grace Otieno", "1953-03-02", None, "hh-b"),
    ]
    decided = match([Person("r", "Grace", "Otieno", "F", "1953", date_of_birth_estimated="yes")], existing)[0]
    assert decided.decision == "review"
    assert "true" in [candidate.existing_id for candidate in decided.candidates]


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
    "generate",
    [
        lambda seed: population(1500, 600, seed=seed, cht_dates=True),
        lambda seed: west_population(1500, 600, seed=seed, cht_dates=True),
    ],
)
def test_generators_write_cht_estimates_flagged_and_list_year_typos_deterministically(generate, tmp_path) -> None:
    first, again, other = generate(3), generate(3), generate(4)
    assert first == again and first != other
    flagged = [p for p in first.existing if p.date_of_birth_estimated]
    estimates = [p for p in first.existing if p.date_of_birth_estimated or (p.date_of_birth or "").endswith("-01-01")]
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
