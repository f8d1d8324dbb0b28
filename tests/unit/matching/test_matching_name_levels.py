"""Names alike by a typo and names alike by look alone are two levels of the name comparison, so a
trained model weighs "michael"/"michelle" (another person of a family) apart from "mohamed"/"mohammed"."""

from __future__ import annotations

import math

import pytest

from cht_bridge.matching import MatchConfig, Person, match
from cht_bridge.matching.model import load_model


def _names_evidence(incoming: Person, existing: Person) -> str:
    decided = match([incoming], [existing], MatchConfig())[0]
    assert [c.existing_id for c in decided.candidates] == [existing.id]
    return next(text for field, text, _ in decided.candidates[0].evidence if field == "names")


def _names_levels() -> dict[str, dict]:
    names = next(c for c in load_model()["comparisons"] if c["output_column_name"] == "names")
    return {lv["label_for_charts"]: lv for lv in names["comparison_levels"] if not lv.get("is_null_level")}


def test_a_typo_and_a_look_alike_name_reach_different_levels() -> None:
    existing = Person(id="e", given_name="Mohammed", family_name="Shekoni", date_of_birth="1980-04-02", place="v1")
    typo = Person(id="typo", given_name="Mohamed", family_name="Shekoni", date_of_birth="1980-04-02", place="v1")
    assert _names_evidence(typo, existing) == "names differ in one letter"
    # JW("michael", "michelle") = 0.92, three letters apart: a name of its own, not a typo
    relative = Person(id="e", given_name="Michelle", family_name="Shekoni", date_of_birth="1981-04-02", place="v1")
    moved = Person(id="row", given_name="Michael", family_name="Shekoni", date_of_birth="1980-04-02", place="v1")
    assert _names_evidence(moved, relative) == "names spelt alike"


def test_the_shipped_model_weighs_both_levels_as_the_one_level_before() -> None:
    levels = _names_levels()
    typo = levels[">= 2 tokens alike, one letter apart"]
    alike = levels[">= 2 tokens alike (Jaro-Winkler >= 0.92)"]
    before = math.log2(0.07 / 3e-5)
    assert math.log2(typo["m_probability"] / typo["u_probability"]) == pytest.approx(before)
    assert math.log2(alike["m_probability"] / alike["u_probability"]) == pytest.approx(before, abs=1e-3)
    assert typo["m_probability"] + alike["m_probability"] == pytest.approx(0.07)
