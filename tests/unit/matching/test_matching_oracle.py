"""The oracle of ``bench/matching_oracle.py``: its field grades order agreement as they say, a
namesake no field tells apart is found (and one a field tells apart is not), and a pattern counts
as "the model loses it" only when its errors are far fewer than the model predicts."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from bench.matching_oracle import (
    Index,
    Pattern,
    RowView,
    Side,
    _coarse,
    _field_best,
    at_least,
    classify,
    dob_grade,
    grades,
    names_grade,
    namesake,
    one_edit,
    poisson_at_most,
)
from cht_bridge.matching.decisions import Decision
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
    # more agreement grades higher: both exact > one a typo > one missing > one missing and another left over
    row = ["amina", "juma"]
    exact, typo, missing, left_over = (
        names_grade(row, ["amina", "juma"]),
        names_grade(row, ["amina", "jumaa"]),
        names_grade(row, ["amina"]),
        names_grade(row, ["amina", "otieno"]),
    )
    assert exact > typo > missing > left_over


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


def test_far_dates_are_graded_as_the_models_level_three_to_nine_years() -> None:
    born = date(1990, 5, 7)
    assert dob_grade(born, date(1987, 2, 2)) == dob_grade(born, date(1981, 2, 2)) == 1  # 3 and 9 years
    assert dob_grade(born, date(1980, 2, 2)) == 0  # 10 years: "born 10 or more years apart"


def test_a_year_only_date_is_marked_on_either_side() -> None:
    full = Person(id="a", given_name="amina", date_of_birth="1990-05-07")
    year_only = Person(id="b", given_name="amina", date_of_birth="1984-01-01")
    other_full = Person(id="c", given_name="amina", date_of_birth="1984-03-02")
    assert _coarse("date_of_birth", 1, full, year_only) == "far (year only)"  # the CHT side's estimate
    assert _coarse("date_of_birth", 1, year_only, full) == "far (year only)"
    assert _coarse("date_of_birth", 1, full, other_full) == "far"


def _run(rows: list[Person], cht: list[Person]) -> SimpleNamespace:
    people = Side(cht, "KE")
    where = {person.id: x for x, person in enumerate(cht)}
    return SimpleNamespace(rows=Side(rows, "KE"), cht=people, index=Index(people), where=where)


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


def test_two_names_written_as_one_find_a_namesake_through_the_index() -> None:
    truth = Person(id="t", given_name="adeola", family_name="olu", place="hh-1")
    rival = Person(id="r", given_name="adeola", family_name="olu", place="hh-1")
    row = Person(id="row", given_name="adeolaolu", place="hh-1")
    run = _run([row], [truth, rival])
    assert names_grade(["adeolaolu"], ["adeola", "olu"]) == (1, 0, 0)
    assert 1 in run.index.sharing(["adeolaolu"])
    assert namesake(run, 0, "t") == "r"


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


def test_classify_puts_each_review_row_in_its_class() -> None:
    cht = [
        Person(id="t1", given_name="amina", family_name="juma", date_of_birth="1990-05-07", place="hh-1"),
        Person(id="r1", given_name="amina", family_name="juma", date_of_birth="1985-03-02", place="hh-1"),
        Person(id="t2", given_name="kofi", family_name="mensah", date_of_birth="1970-06-15", sex="male", place="v1"),
        Person(id="o2", given_name="kofi", family_name="mensa", date_of_birth="1972-04-04", sex="male", place="v1"),
        Person(id="t3", given_name="juma", family_name="otieno", date_of_birth="1980-02-03"),
        Person(id="o3", given_name="juma", family_name="otieno", date_of_birth="1982-02-03"),
        Person(id="t4", given_name="wanjiru", family_name="kamau", date_of_birth="1995-01-10", place="v4"),
        Person(id="o4", given_name="wanjiru", family_name="kamau", date_of_birth="1993-08-08", place="v3"),
    ]
    rows = [
        Person(id="a", given_name="amina", family_name="juma", place="hh-1"),  # no date: r1 is as good as t1
        Person(id="b", given_name="kofi", family_name="mensah", date_of_birth="1970-06-15", sex="male", place="v1"),
        Person(id="c", given_name="juma", family_name="otieno", date_of_birth="1980-02-03"),
        Person(id="d", given_name="wanjiru", family_name="kamau", date_of_birth="1995-01-10", place="v3"),
        Person(id="linked", given_name="kofi", family_name="mensah", date_of_birth="1970-06-15", place="v1"),
    ]
    truths = ["t1", "t2", "t3", "t4", "t2"]
    offered = [["t1", "r1"], ["t2", "o2"], ["t3", "o3"], ["t4", "o4"], ["t2"]]
    run = _run(rows, cht)
    where = {p.id: x for x, p in enumerate(cht)}
    run.views = []
    for r, (row, truth, ids) in enumerate(zip(rows, truths, offered, strict=True)):
        graded = [(e, 0.5, grades(run.rows, r, run.cht, where[e])) for e in ids]
        best, key = _field_best(graded, row, run.cht, where, run.index)
        kind = "link" if row.id == "linked" else "review"
        run.views.append(RowView(Decision(row.id, kind, ids[0], 0.5, kind), truth, graded, best, key))
    b, c, d = run.views[1], run.views[2], run.views[3]
    assert b.best == "t2" and c.best == "t3" and d.best is None and b.key != c.key
    rules = {
        b.key: Pattern(rows=40, right=40, p_best=30.0),  # 0 errors where the model predicted 10: (b)
        c.key: Pattern(rows=40, right=37, p_best=37.0),  # 3 errors, 3 predicted: the risk is real, (c)
    }
    found = {view.decision.incoming_id: cls for view, cls, _ in classify(run, rules)}
    assert found == {"a": "a", "b": "b", "c": "c", "d": "d"}
    # too few rows behind a pattern: not judged
    thin = {b.key: Pattern(rows=5, right=5, p_best=3.0), c.key: rules[c.key]}
    assert {v.decision.incoming_id: cls for v, cls, _ in classify(run, thin)}["b"] == "d"


def test_the_narrowed_search_finds_every_rival_a_scan_of_the_population_finds() -> None:
    # The rival search reads only people with a partner for as many of the row's names as the
    # true person has (tractable at 100,000 people); a scan of everyone must find nothing more.
    import random

    rng = random.Random(3)
    given, family = ["amina", "amian", "kofi", "juma", "adeola"], ["juma", "jumaa", "otieno", "olu", "mensah"]
    cht = [
        Person(
            id=f"p{i}",
            given_name=" ".join(rng.sample(given, rng.choice((1, 2)))),
            family_name=rng.choice(family),
            place=rng.choice(("v1", "v2")),
            date_of_birth=rng.choice((None, "1990-05-07", "1990-07-05")),
        )
        for i in range(120)
    ]
    rows = [
        Person(id=f"r{i}", given_name=rng.choice(given), family_name=rng.choice(family), place=rng.choice(("v1", None)))
        for i in range(40)
    ]
    run = _run(rows, cht)
    for r in range(len(rows)):
        for t, truth in enumerate(cht[:30]):
            mine = grades(run.rows, r, run.cht, t)
            scan = [x for x in range(len(cht)) if x != t and at_least(grades(run.rows, r, run.cht, x), mine)]
            found = namesake(run, r, truth.id)
            assert (found is None) == (not scan)
            assert found is None or found == cht[scan[0]].id
