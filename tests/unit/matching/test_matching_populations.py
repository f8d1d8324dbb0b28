"""The synthetic population is deterministic and has the shape the benchmark relies on."""

from __future__ import annotations

import random

from cht_bridge.matching import Person
from standins.populations import emr_version, population


def test_same_seed_same_population() -> None:
    assert population(200, 100, seed=3) == population(200, 100, seed=3)
    assert population(200, 100, seed=3) != population(200, 100, seed=4)


def test_shape_truth_and_new_share() -> None:
    data = population(400, 200, seed=1, new_share=0.25)
    assert len(data.existing) == 400 and len(data.incoming) == 200
    assert set(data.truth) == {p.id for p in data.incoming}
    existing_ids = {p.id for p in data.existing}
    assert all(value is None or value in existing_ids for value in data.truth.values())
    new_share = sum(value is None for value in data.truth.values()) / len(data.truth)
    assert 0.2 <= new_share <= 0.3
    for later, earlier in data.duplicates.items():
        assert data.truth[later] == data.truth[earlier] and earlier < later


def test_emr_version_is_a_person_row() -> None:
    source = Person("c", "Grace Akinyi", "Otieno", "female", "1990-03-05", "+254712345678", "hh-1", ("hh-1", "chw-1"))
    row = emr_version(source, random.Random(0))
    assert set(row) == {"given_name", "family_name", "sex", "date_of_birth", "phone", "place", "identifier"}
    Person(id="emr-1", **row)
