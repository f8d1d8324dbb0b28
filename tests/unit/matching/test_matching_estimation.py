"""How training estimates the model: the one-to-one EM, levels of empty fields, dates' frequencies
by kind, and blocking that finds names written as one."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from cht_bridge.matching import MatchConfig, Person, match
from cht_bridge.matching.columns import Profile, adapt
from cht_bridge.matching.features import Frequencies
from cht_bridge.matching.model import load_model
from cht_bridge.matching.one_to_one import refine

_LEVELS = [
    {"sql_condition": "x IS NULL", "label_for_charts": "null", "is_null_level": True},
    {"sql_condition": "x = y", "label_for_charts": "agree", "m_probability": 0.5, "u_probability": 0.01},
    {"sql_condition": "x ~ y", "label_for_charts": "close", "m_probability": 0.2, "u_probability": 0.04},
    {"sql_condition": "ELSE", "label_for_charts": "differ", "m_probability": 0.3, "u_probability": 0.95},
]


def _pairs(rows: list[tuple[str, str, int, int, int]]) -> pa.Table:
    """(existing, incoming, level of a, of b, of c) as the one-to-one EM reads pairs."""
    names = ("existing", "incoming", "level_a", "level_b", "level_c")
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


def test_one_to_one_em_finds_how_rarely_true_pairs_disagree() -> None:
    # 200 rows: each is existing person k (comparisons a and c agree, b agrees for 90 %, is close
    # for 10 %) and has four strangers as rival candidates, who agree on nothing. 50 more rows are
    # new people whose two candidates each agree on a alone (namesakes).
    rows = []
    for k in range(200):
        rows.append((f"e{k}", f"i{k}", 0, 0 if k % 10 else 1, 0))
        rows += [(f"e{k + j + 1}", f"i{k}", 2, 2, 2) for j in range(4)]
    for k in range(50):
        rows += [(f"e{k + j}", f"n{k}", 0, 2, 2) for j in range(2)]
    comparisons = [{"output_column_name": name, "comparison_levels": _LEVELS} for name in "abc"]
    refined, share = refine(_pairs(rows), comparisons, comparisons, share=0.5, n_existing=1000, bounds=(0.05, 0.95))
    m_b = {lv["label_for_charts"]: lv["m_probability"] for lv in refined[1]["comparison_levels"][1:]}
    # the strangers do not count as true pairs: "differ" is rare among them, close ones are 10 %
    assert m_b["differ"] < 0.03
    assert m_b["close"] == pytest.approx(0.1, abs=0.03)
    assert 0.7 < share < 0.85  # 200 of 250 rows exist
    assert sum(m_b.values()) == pytest.approx(1.0)


def test_a_level_no_pair_reaches_keeps_the_start_m() -> None:
    rows = [(f"e{k}", f"i{k}", 0, 0, 0) for k in range(50)] + [(f"e{k + 1}", f"i{k}", 2, 2, 2) for k in range(50)]
    comparisons = [{"output_column_name": name, "comparison_levels": _LEVELS} for name in "abc"]
    refined, _ = refine(_pairs(rows), comparisons, comparisons, share=0.5, n_existing=100, bounds=(0.05, 0.95))
    m = [lv["m_probability"] for lv in refined[0]["comparison_levels"][1:]]
    # "close" is never reached: the start's 0.2 (not m = u, its share handed to "agree")
    assert m[1] == pytest.approx(0.2)
    assert sum(m) == pytest.approx(1.0)


def test_levels_reading_an_empty_field_leave_the_model() -> None:
    found = Profile({"names": 1.0, "sex": 0.0, "date_of_birth": 1.0, "phone": 0.0, "place": 1.0}, "code")
    adapted = adapt(load_model(), found)
    sql = [lv["sql_condition"] for c in adapted["comparisons"] for lv in c["comparison_levels"]]
    assert not [s for s in sql if '"phone_l"' in s or '"sex_l"' in s]
    rules = [rule["blocking_rule"] for rule in adapted["blocking_rules_to_generate_predictions"]]
    assert rules and not [rule for rule in rules if 'l."phone"' in rule]
    # the shipped model's place comparison still has its "same place" level, now the first
    place = next(c for c in adapted["comparisons"] if c["output_column_name"] == "place")
    assert place["comparison_levels"][1]["label_for_charts"] == "same place"


def test_a_dates_frequency_is_taken_within_its_kind() -> None:
    people = [Person(id=str(i), given_name="a", date_of_birth=f"19{50 + i % 40}-01-01") for i in range(200)]
    people += [Person(id=f"f{i}", given_name="a", date_of_birth=f"1960-03-{1 + i % 28:02d}") for i in range(800)]
    counts = Frequencies(people, [None] * len(people))
    # a fifth of the dates are 1 January: equal estimated dates are five times rarer a coincidence
    # within their level than their share of all people says, full dates 1/0.8 times
    assert counts.date_tf("1960-01-01") == pytest.approx(counts.tf("date_of_birth", "1960-01-01") * 0.2)
    assert counts.date_tf("1960-03-05") == pytest.approx(counts.tf("date_of_birth", "1960-03-05") * 0.8)
    assert counts.date_tf("") is None


def test_names_written_as_one_are_found_and_weighed() -> None:
    existing = [
        Person(id="grace", given_name="Grace", family_name="Akinyi", date_of_birth="1990-05-17", place="v1"),
        Person(id="other", given_name="Mary", family_name="Wanjiku", date_of_birth="1985-02-03", place="v2"),
    ]
    # no name token in common, no date, no place: only the run-together blocking key finds her
    incoming = [Person(id="row", given_name="Graceakinyi")]
    decided = match(incoming, existing, MatchConfig())[0]
    assert [c.existing_id for c in decided.candidates] == ["grace"]
    assert decided.candidates[0].evidence[0][1].startswith("two names written as one")
    assert math.isfinite(decided.candidates[0].probability)
