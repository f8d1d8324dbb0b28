"""A value's frequency floor (``tf_minimum_u_value``) is a number of people, not a share: agreeing
on a household's place must not weaken as unrelated people are added elsewhere, or every pair
loses to the larger population's prior what its own evidence should have won back."""

from __future__ import annotations

import math

from cht_bridge.matching import Person
from cht_bridge.matching.features import Frequencies, build_table, tf_tables
from cht_bridge.matching.model import load_model
from cht_bridge.matching.scoring import FLOOR_PEOPLE, floors_for_population, score


def _household_place_weight(others: int) -> tuple[float, float]:
    """(place weight, pair's match weight) of a row naming a member of a household of four, among
    ``others`` unrelated people each in a place of their own."""
    household = [
        Person(id=f"h{i}", given_name=f"Hgiven{i}", family_name="Hfamily", place="hh-1", area=("hh-1", "chw-1"))
        for i in range(4)
    ]
    filler = [
        Person(id=f"f{i}", given_name=f"Fg{i:06d}", family_name=f"Ff{i:06d}", place=f"f-{i}", area=(f"f-{i}", "chw-2"))
        for i in range(others)
    ]
    existing = [*household, *filler]
    incoming = [
        Person(id="row", given_name="Hgiven0", family_name="Hfamily", place="hh-1", area=("hh-1", "chw-1")),
        Person(id="other", given_name="Zgiven", family_name="Zfamily", place="z-1", area=("z-1", "chw-3")),
    ]
    phones = [None] * (len(existing) + len(incoming))
    counts = Frequencies([*existing, *incoming], phones)
    left = build_table(existing, [f"e{i}" for i in range(len(existing))], phones[: len(existing)], counts)
    right = build_table(incoming, ["i0", "i1"], phones[len(existing) :], counts)
    between, _ = score(
        left, right, tf_tables([left, right], counts), prior_between=0.75 / len(existing), prior_within=1e-3
    )
    pair = next(p for p in between if p.left == "e0" and p.right == "i0")
    return dict(pair.weights)["place"], pair.match_weight


def test_a_households_place_is_worth_more_in_a_larger_population() -> None:
    # 12,000 -> 24,000 people: the household's share of the population halves, so agreeing on its
    # place is one bit more evidence, which pays back the bit the prior of any one pair loses.
    # Held as a share (1e-3) the floor capped both at the same weight: -1 bit overall.
    small_place, small_pair = _household_place_weight(12_000)
    large_place, large_pair = _household_place_weight(24_000)
    assert math.isclose(large_place - small_place, 1.0, abs_tol=0.01)
    # names and place both become rarer; the prior falls by one bit: the pair's weight does not fall
    assert large_pair >= small_pair


def test_floors_are_lowered_for_larger_populations_only() -> None:
    model = load_model()
    assert floors_for_population(model, FLOOR_PEOPLE) is model
    assert floors_for_population(model, 3_000) is model
    halved = floors_for_population(model, 2 * FLOOR_PEOPLE)
    for before, after in zip(model["comparisons"], halved["comparisons"], strict=True):
        for old, new in zip(before["comparison_levels"], after["comparison_levels"], strict=True):
            if old.get("tf_minimum_u_value"):
                assert math.isclose(new["tf_minimum_u_value"], old["tf_minimum_u_value"] / 2)
            else:
                assert new == old
    floors = [lv for c in model["comparisons"] for lv in c["comparison_levels"] if lv.get("tf_minimum_u_value")]
    assert floors, "the shipped model has floors (place, phone) for this to act on"
