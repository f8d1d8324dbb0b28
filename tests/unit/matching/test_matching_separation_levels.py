"""Levels for kinds of noise that had no level of their own: three names each the same or one letter
apart, a date of birth with day and month swapped, two estimated (1 January) dates a year or two
apart, and a row that names no place but the same area. Each reaches its own level with its own
words; the shipped model weighs each as the wider level it was cut from (its decisions unchanged);
training estimates each on its own."""

from __future__ import annotations

import functools
import math

import pytest

from cht_bridge.matching import MatchConfig, Person, match
from cht_bridge.matching.model import BRIDGE_KEY, load_model
from cht_bridge.matching.training import KEPT_START_M, MIN_U_PAIRS, U_PAIRS, train
from standins.populations import population
from standins.populations_west import west_population

# (comparison, new level, the level it was cut from, that level's shipped m and u before the cut)
NEW_LEVELS = [
    ("names", "every name the same or one letter apart", ">= 2 tokens shared (e.g. surname changed)", 0.05, 1.5e-5),
    ("date_of_birth", "same year, day and month swapped", "same year, day or month wrong or swapped", 0.08, 0.002),
    ("date_of_birth", "1-2 years apart, both dates estimated (1 January)", "1-2 years apart", 0.07, 0.068),
    ("place", "place unknown, same area", "places differ, same area", 0.02, 0.05),
]
#: reached only on data with CHT-form estimates (the entry day less an age) or year typos, which the
#: default populations do not write: (comparison, new level, the level it was cut from, that
#: level's shipped m and u before the cut)
CHT_DATES_LEVELS = [
    (
        "date_of_birth",
        "same year, both dates estimated (1 January)",
        "same year, one side only a year (1 January)",
        0.05,
        0.005,
    ),
    ("date_of_birth", "same birthday, last digit of the year off", "3-9 years apart, both dates full", 0.0225, 0.0825),
]


def _evidence(incoming: Person, existing: Person, field: str) -> tuple[str, float]:
    decided = match([incoming], [existing], MatchConfig())[0]
    assert [c.existing_id for c in decided.candidates] == [existing.id]
    return next((text, weight) for name, text, weight in decided.candidates[0].evidence if name == field)


def _levels(model: dict, field: str) -> dict[str, dict]:
    comparison = next(c for c in model["comparisons"] if c["output_column_name"] == field)
    return {lv["label_for_charts"]: lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")}


def _weight(level: dict) -> float:
    return math.log2(level["m_probability"] / level["u_probability"])


def _grace(**fields: object) -> Person:
    return Person(**{"id": "row", "given_name": "Grace", "family_name": "Akinyi", **fields})


# (existing, the row reaching the new level, field, its words, a row just outside it, that row's words)
CASES = {
    "three names with one typo are a typo, not a changed surname": (
        Person(id="e", given_name="Rosemary Duncan", family_name="Amoako", date_of_birth="1980-04-02"),
        Person(id="row", given_name="Rosemarry Duncan", family_name="Amoako", date_of_birth="1980-04-02"),
        "names",
        "every name the same or one letter apart",
        Person(id="row", given_name="Rosemary Duncan", family_name="Boakye", date_of_birth="1980-04-02"),
        "two names shared, another differs",
    ),
    "day and month swapped": (
        _grace(id="e", date_of_birth="1980-04-03"),
        _grace(date_of_birth="1980-03-04"),
        "date_of_birth",
        "date of birth with day and month swapped",
        _grace(date_of_birth="1980-04-05"),
        "birth year same, day or month differs",
    ),
    "two estimated dates a year apart": (
        _grace(id="e", date_of_birth="1985-01-01"),
        _grace(date_of_birth="1986-01-01"),
        "date_of_birth",
        "born 1-2 years apart, both dates estimated (marked so or 1 January)",
        _grace(date_of_birth="1986-01-02"),
        "born 1-2 years apart",
    ),
    "two estimates of one year": (
        _grace(id="e", date_of_birth="1985-01-01"),
        _grace(date_of_birth="1985-09-14", date_of_birth_estimated=True),
        "date_of_birth",
        "same birth year, both dates estimated (marked so or 1 January)",
        _grace(date_of_birth="1985-09-14"),
        "same birth year (one side knows only the year)",
    ),
    "a year's last digit keyed wrong": (
        _grace(id="e", date_of_birth="1985-04-03"),
        _grace(date_of_birth="1988-04-03"),
        "date_of_birth",
        "same birthday, one digit of the year differs",
        _grace(date_of_birth="1991-04-03"),
        "born 3-9 years apart, both dates exact",
    ),
    "no place but the same area is not a place that differs": (
        _grace(id="e", place="D01V011", area=("D01",)),
        _grace(area=("D01",)),
        "place",
        "place unknown, same area",
        _grace(place="D01V002", area=("D01",)),
        "other place in the same area",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_kind_of_noise_reaches_its_own_level_in_words(case) -> None:
    existing, row, field, words, outside, outside_words = case
    assert _evidence(row, existing, field)[0] == words
    assert _evidence(outside, existing, field)[0] == outside_words


@pytest.mark.parametrize(("field", "new", "rest", "m", "u"), [*NEW_LEVELS, *CHT_DATES_LEVELS])
def test_the_shipped_model_weighs_a_new_level_as_the_level_it_was_cut_from(field, new, rest, m, u) -> None:
    levels = _levels(load_model(), field)
    assert _weight(levels[new]) == pytest.approx(math.log2(m / u))
    assert _weight(levels[rest]) == pytest.approx(math.log2(m / u), abs=1e-3)
    assert levels[new]["m_probability"] + levels[rest]["m_probability"] == pytest.approx(m)


@pytest.fixture(scope="module")
def trained() -> dict:
    data = west_population(1500, 800, seed=3)
    return train(data.existing, data.incoming, seed=3)


def test_training_estimates_each_new_level_on_its_own(trained) -> None:
    shipped = {field: _levels(load_model(), field) for field, *_ in NEW_LEVELS}
    for field, new, *_ in NEW_LEVELS:
        level = _levels(trained, field)[new]
        assert level["m_probability"] != shipped[field][new]["m_probability"], new
        # u measured on this data, or, where fewer than MIN_U_PAIRS of the sampled pairs are two
        # people once the list's true pairs are taken out, the sample's bound (``corrected_u``):
        # "every name the same or one letter apart" showed 14 pairs, about 12 of them true ones
        measured = level["u_probability"] != shipped[field][new]["u_probability"]
        assert measured or level["u_probability"] <= MIN_U_PAIRS / U_PAIRS, new
    # and the data separates what the wider level had mixed: each new level counts more for a match
    for field, new, rest, _, _ in NEW_LEVELS:
        levels = _levels(trained, field)
        assert _weight(levels[new]) > _weight(levels[rest]) + 1.0, new


@pytest.mark.parametrize(("field", "new", "rest"), [level[:3] for level in CHT_DATES_LEVELS])
def test_training_weighs_levels_of_cht_dates_on_their_own(field, new, rest) -> None:
    model = _trained_on_cht_dates()
    trained = _levels(model, field)
    shipped = _levels(load_model(), field)
    # estimated from the data, not kept (a kept level's m would be its rest's weight over its u)
    assert [field, new] not in model[BRIDGE_KEY][KEPT_START_M]
    assert trained[new]["u_probability"] != shipped[new]["u_probability"]
    # the data separates what the wider level mixed: a copied date typed wrong, or two estimates of
    # one person, count for a match where the rest does not
    assert _weight(trained[new]) > _weight(trained[rest]) + 1.0


@functools.cache
def _trained_on_cht_dates() -> dict:
    # East African: the second population has too few full dates for a year typo's level to be estimated at this size
    data = population(2000, 1000, seed=16, cht_dates=True)
    return train(data.existing, data.incoming, seed=16)


def test_a_row_known_only_by_its_names_one_misspelt_finds_its_person() -> None:
    # No date of birth, phone or place to block on, and the typo breaks every name-pair key: the
    # person was never compared, and a duplicate was created.
    existing = [
        Person(id="e1", given_name="Margret", family_name="Mugambi", sex="female", date_of_birth="2004-05-26"),
        Person(id="e2", given_name="Mary", family_name="Wanjiru", sex="female", date_of_birth="1990-01-02"),
    ]
    row = Person(id="row", given_name="Mrgret", family_name="Mugambi", sex="F")
    decided = match([row], existing, MatchConfig())[0]
    assert [c.existing_id for c in decided.candidates] == ["e1"]
    assert decided.decision != "new"


def test_where_first_letters_make_too_many_pairs_a_name_and_another_names_end_still_find_the_person() -> None:
    # Training drops a rule that makes too many pairs (common names): this narrower one remains.
    model = load_model()
    model["blocking_rules_to_generate_predictions"] = [
        rule for rule in model["blocking_rules_to_generate_predictions"] if "name_ends" in rule["blocking_rule"]
    ]
    existing = [
        Person(id="e1", given_name="Akinkunmi", family_name="Ampofo", place="D00V015", area=("D00",)),
        Person(id="e2", given_name="Akinkunmi", family_name="Ampofo", place="D01V002", area=("D01",)),
    ]
    row = Person(id="row", given_name="Akinkunnmi", family_name="Ampofo", area=("D00",))
    decided = match([row], existing, MatchConfig(model=model))[0]
    assert [c.existing_id for c in decided.candidates] == ["e1"]
