"""A list names each existing person once: the claims of the other rows move a pair's prior
(``exclusive.py``), in trained models only."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from cht_bridge.matching import MatchConfig, Person, match
from cht_bridge.matching.exclusive import EXCLUSIVE_CLAIMS, FLOOR, with_claims
from cht_bridge.matching.model import BRIDGE_KEY, load_model
from cht_bridge.matching.scoring import ScoredPair


def _pair(existing: str, incoming: str, weight: float) -> ScoredPair:
    return ScoredPair(existing, incoming, 1 / (1 + 2**-weight), weight, ())


def _weights(pairs: list[ScoredPair]) -> dict[tuple[str, str], float]:
    return {(pair.left, pair.right): pair.match_weight for pair in pairs}


def test_a_person_another_row_names_beyond_doubt_is_a_poor_candidate() -> None:
    # row "b" is person X beyond doubt; row "a", a relative, has X as its only (fair) candidate
    pairs = [_pair("x", "b", 30.0), _pair("x", "a", 8.0)]
    after = _weights(with_claims(pairs, [], share=0.5, n_existing=1000, margin=0.05))
    assert after[("x", "a")] == pytest.approx(8.0 + math.log2(FLOOR), abs=0.1)  # -10 bits
    # "a" claims X only a little, so "b" keeps nearly all of its weight
    assert after[("x", "b")] > 29.0


def test_a_row_is_likelier_one_of_the_people_the_others_do_not_name() -> None:
    # 7 of 10 existing people are named by other rows beyond doubt; row "r"'s candidate is not
    pairs = [_pair(f"e{k}", f"i{k}", 40.0) for k in range(7)] + [_pair("e9", "r", 2.0)]
    after = _weights(with_claims(pairs, [], share=0.9, n_existing=10, margin=0.05))
    # its prior is one in the 3 people left, not one in 10
    assert after[("e9", "r")] == pytest.approx(2.0 + math.log2(10 / 3), abs=0.05)


def test_rows_the_list_names_twice_do_not_compete() -> None:
    pairs = [_pair("x", "b", 30.0), _pair("x", "a", 8.0)]
    within = [ScoredPair("a", "b", 0.97, 5.0, ())]
    after = _weights(with_claims(pairs, within, share=0.5, n_existing=1000, margin=0.05))
    assert after[("x", "a")] == pytest.approx(8.0, abs=0.01)


def test_claims_never_make_another_candidate_the_best() -> None:
    # twins: row "a" fits X1 and X2 alike; another row (the same person as "a", unrecognised)
    # claims X1. Pushing "a" onto X2 would be a wrong link: "a" keeps its weights.
    pairs = [_pair("x1", "a", 12.0), _pair("x2", "a", 12.0), _pair("x1", "c", 14.0)]
    after = _weights(with_claims(pairs, [], share=0.5, n_existing=1000, margin=0.05))
    assert after[("x1", "a")] == after[("x2", "a")] == 12.0
    # nor may claims turn a clear second into the best
    pairs = [_pair("x1", "a", 14.0), _pair("x2", "a", 11.0), _pair("x1", "c", 30.0)]
    after = _weights(with_claims(pairs, [], share=0.5, n_existing=1000, margin=0.05))
    assert (after[("x1", "a")], after[("x2", "a")]) == (14.0, 11.0)


def test_a_trained_model_discounts_a_namesake_another_row_names() -> None:
    grace = {"given_name": "Grace", "family_name": "Akinyi", "sex": "F", "place": "v1"}
    existing = [
        Person(id="grace", phone="0712000001", **grace),
        *[Person(id=f"p{k}", given_name=f"name{k}", family_name="Otieno", place=f"v{2 + k % 50}") for k in range(999)],
    ]
    incoming = [
        # Grace herself, beyond doubt (her phone)
        Person(id="row-grace", date_of_birth="1990-05-17", phone="0712000001", **grace),
        # her daughter of the same name, in her village: CHT holds no date of birth to tell them apart
        Person(id="row-daughter", date_of_birth="2015-02-03", phone="0733456789", **grace),
    ]
    flagged = load_model()
    flagged[BRIDGE_KEY] = {EXCLUSIVE_CLAIMS: True}
    # (a list without duplicates: the two rows are two people)
    config = MatchConfig(upper=0.99, lower=0.1, duplicate_share=1e-6)
    plain = {d.incoming_id: d for d in match(incoming, existing, config)}
    claims = {d.incoming_id: d for d in match(incoming, existing, replace(config, model=flagged))}
    assert plain["row-daughter"].candidates[0].existing_id == "grace"
    assert plain["row-daughter"].decision == "link"  # alone, she looks like Grace
    # Grace's own row names her beyond doubt: 10 bits less for the daughter
    odds = [
        d.candidates[0].probability / (1 - d.candidates[0].probability)
        for d in (plain["row-daughter"], claims["row-daughter"])
    ]
    assert math.log2(odds[0] / odds[1]) == pytest.approx(-math.log2(FLOOR), abs=0.5)
    assert claims["row-daughter"].decision != "link"
    assert claims["row-grace"].decision == plain["row-grace"].decision == "link"
