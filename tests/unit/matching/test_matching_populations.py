"""The synthetic population is deterministic and has the shape the benchmark relies on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import pytest

from cht_bridge.matching import Person
from standins.populations import Population, emr_version, population
from standins.populations_west import west_population


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


#: The fields of a Person on main, before ``date_of_birth_estimated`` existed.
_MAIN_FIELDS = ("id", "given_name", "family_name", "sex", "date_of_birth", "phone", "place", "area", "identifier")


def _digest(data: Population) -> str:
    rows = [{k: dataclasses.asdict(p)[k] for k in _MAIN_FIELDS} for p in [*data.existing, *data.incoming]]
    truth = sorted(data.truth.items(), key=str)
    blob = json.dumps([rows, truth, sorted(data.duplicates.items())], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@pytest.mark.parametrize(
    ("make", "seed", "expected"),
    [
        (population, 7, "bac228d514e9b4477809eff955bf3ec82d28acf183db8a29ef1f7374004b169d"),
        (population, 11, "d5acfb0e919fdf00a09a25b81afab883cf2c3333f6923a886e8bad2e5c64e90d"),
        (west_population, 7, "88960b641def64aaa3c165330e7378e75df1ed3de7cb7a0c916bb235a1425c6d"),
        (west_population, 11, "518a9a9f061df877af04ddce9433d6019e47267b7ef8e72dc9c55249ca170072"),
    ],
    ids=["east-7", "east-11", "second-7", "second-11"],
)
def test_default_populations_are_mains(make, seed, expected) -> None:
    """Without ``cht_dates`` the generators give the benchmark's data as it was: every row, field by
    field, the truth and the within-list duplicates of 2,000 x 2,000 at the benchmark's seeds hash
    to what main's generator gave (the digests were computed by this ``_digest`` run on main's
    ``standins/`` and ``cht_bridge/matching/records.py``, before the CHT-form dates; a change of
    any draw, of the draws' order or of a written value changes them)."""
    data = make(2000, 2000, seed=seed)
    assert not any(p.date_of_birth_estimated for p in [*data.existing, *data.incoming])
    assert _digest(data) == expected
    assert _digest(make(2000, 2000, seed=seed, cht_dates=True)) != expected
