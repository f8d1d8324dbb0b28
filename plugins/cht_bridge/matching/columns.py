"""Fit the model's comparisons to the columns a deployment's data actually has.

A column empty everywhere (no phones in this EMR, no sex recorded) must carry no weight, so its
comparison leaves the model instead of being trained on nothing. Places come in two shapes: codes
(CHT place ids, postcodes, facility codes) that agree exactly or not at all, and names (villages,
suburbs) typed by hand, whose spelling varies: those get a fuzzy level between "same place" and
"same wider area". An area is either the place's own lineage (a CHT household lies in one CHW
area: same place means same area) or a second, independent part of the address (a suburb and a
postcode): then place and area agreeing together is far rarer among strangers than the place
alone, and gets a level of its own above "same place".
"""

from __future__ import annotations

import copy
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cht_bridge.matching.records import Person

#: A value is code-like when it holds a digit and no space (``hh-0001``, ``2615``, ``KE-047``).
_CODE = re.compile(r"^(?=.*\d)\S+$")
#: The comparison that reads each field (``output_column_name``).
COMPARISON_FIELDS = {
    "names": "names",
    "sex": "sex",
    "date_of_birth": "date_of_birth",
    "phone": "phone",
    "place": "place",
}
#: The feature columns (``features.build_table``) each field fills: a level or blocking rule that
#: reads one of an empty field's columns can never be reached.
FIELD_COLUMNS = {
    "names": ("names", "name_key", "name_pairs", "name_joins", "name_initials", "name_ends"),
    "sex": ("sex",),
    "date_of_birth": ("date_of_birth", "birth_year", "birth_month", "birth_day"),
    "phone": ("phone", "phone9"),
    "place": ("place", "area", "area_key", "places"),
}
#: Jaro-Winkler similarity from which two place names count as the same place misspelt.
PLACE_NAME_SIMILARITY = 0.9
#: Below this share of same-place pairs whose areas overlap, an area is not the place's lineage but
#: independent of it (CHT lineages: 1.0; FEBRL's suburbs and postcodes: about 0.1).
AREA_FOLLOWS_PLACE = 0.5
#: Fewer same-place pairs (both holding an area) than this say nothing: the area is taken to follow
#: the place (a verdict on a handful of people split the levels on a whim).
MIN_SAME_PLACE_PAIRS = 50
#: The most distinct area lists of one place compared pairwise (the most common ones): a bound.
MAX_AREAS_PER_PLACE = 100
#: The place levels that get an "… and same area" level above them when the area is independent.
PLACE_LEVELS_SPLIT_BY_AREA = ("same place", "place names alike")
AND_SAME_AREA = " and same area"


@dataclass(frozen=True)
class Profile:
    """How full each field is (share of people with a value) and what the places look like."""

    filled: dict[str, float]
    place_kind: str  # "code" or "name"
    area_apart: bool = False  # the area is independent of the place (a postcode beside a suburb)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile(people: Sequence[Person], phones: Sequence[str | None]) -> Profile:
    """Measure ``people`` (both lists together): the share holding each field, the place kind, and
    whether the area is independent of the place."""
    total = max(len(people), 1)
    # The kind is the place's own: areas (lineage ids, postcodes) are compared as lists anyway.
    places = [person.place for person in people if person.place]
    filled = {
        "names": sum(1 for p in people if p.name_tokens) / total,
        "sex": sum(1 for p in people if p.sex) / total,
        "date_of_birth": sum(1 for p in people if p.date_of_birth) / total,
        "phone": sum(1 for phone in phones if phone) / total,
        "place": sum(1 for p in people if p.place or p.area) / total,
    }
    code_like = sum(1 for value in places if _CODE.match(value))
    kind = "code" if not places or code_like >= len(places) / 2 else "name"
    return Profile(
        {key: round(value, 4) for key, value in filled.items()}, kind, area_follows(people) < AREA_FOLLOWS_PLACE
    )


def area_follows(people: Sequence[Person]) -> float:
    """Share of pairs of people at the same place whose areas share a value, as the level
    "… and same area" tests them (``list_has_any`` on the areas as ``Person`` cleans them: exact,
    so order and depth of a lineage do not matter). 1.0 (nothing says otherwise) with fewer than
    ``MIN_SAME_PLACE_PAIRS`` such pairs. Only the ``MAX_AREAS_PER_PLACE`` most common area lists
    of a place are compared (a bound, and a sample where a place's areas are that many)."""
    by_place: dict[str, Counter[frozenset[str]]] = defaultdict(Counter)
    for person in people:
        if person.place and person.area:
            by_place[person.place][frozenset(person.area)] += 1
    pairs = overlapping = 0
    for areas in by_place.values():
        common = sorted(areas.items(), key=lambda item: (-item[1], sorted(item[0])))[:MAX_AREAS_PER_PLACE]
        for i, (area, count) in enumerate(common):
            pairs += count * (count - 1) // 2
            overlapping += count * (count - 1) // 2
            for other, other_count in common[i + 1 :]:
                pairs += count * other_count
                overlapping += count * other_count if area & other else 0
    return overlapping / pairs if pairs >= MIN_SAME_PLACE_PAIRS else 1.0


def adapt(settings: dict[str, Any], found: Profile) -> dict[str, Any]:
    """A copy of ``settings`` without the comparisons of empty fields, with place names fuzzy.

    The levels of other comparisons that read an empty field (a name shared *with the same phone*,
    place counted once *when the phone agrees*) go too, as do blocking rules on it: such a level is
    never reached, yet training would keep its starting m, and each comparison's m summing to one,
    that share would be taken from the levels the data does reach (the same place weighed
    log2(0.57/u) instead of log2(0.93/u) on data without phones).

    :raises ValueError: when no field at all has a value (nothing to compare).
    """
    adapted = copy.deepcopy(settings)
    empty = [field for field, share in found.filled.items() if share <= 0]
    kept = [c for c in adapted["comparisons"] if COMPARISON_FIELDS[c["output_column_name"]] not in empty]
    if not kept:
        raise ValueError("every compared column is empty: nothing to match on")
    unreachable = [column for field in empty for column in FIELD_COLUMNS.get(field, ())]
    for comparison in kept:
        comparison["comparison_levels"] = [
            level
            for level in comparison["comparison_levels"]
            if level.get("is_null_level") or not reads_columns(level["sql_condition"], unreachable, '"{}_l"')
        ]
    rules = adapted.get("blocking_rules_to_generate_predictions", [])
    reachable = [rule for rule in rules if not reads_columns(rule["blocking_rule"], unreachable, 'l."{}"')]
    adapted["blocking_rules_to_generate_predictions"] = reachable or rules
    for comparison in kept:
        if comparison["output_column_name"] == "place":
            if found.place_kind == "name":
                _add_fuzzy_place_level(comparison)
            if found.area_apart:
                _add_place_and_area_levels(comparison)
    adapted["comparisons"] = kept
    return adapted


def reads_columns(sql: str, columns: Sequence[str], pattern: str) -> bool:
    """Whether ``sql`` reads any of ``columns`` (quoted as Splink writes them, ``pattern``)."""
    return any(pattern.format(column) in sql for column in columns)


def _add_fuzzy_place_level(comparison: dict[str, Any]) -> None:
    levels = comparison["comparison_levels"]
    if any(level.get("label_for_charts") == "place names alike" for level in levels):
        return
    same = next(i for i, level in enumerate(levels) if level.get("label_for_charts") == "same place")
    levels.insert(
        same + 1,
        {
            "sql_condition": f'jaro_winkler_similarity("place_l", "place_r") >= {PLACE_NAME_SIMILARITY}',
            "label_for_charts": "place names alike",
            "m_probability": 0.1,
            "u_probability": 0.002,
        },
    )


def _add_place_and_area_levels(comparison: dict[str, Any]) -> None:
    """Above "same place" (and "place names alike"), the same with the area agreeing too: training
    estimates its u from random pairs (then far below the place's alone) and its m. The start
    splits the place level's m in two (the comparison's m still sums to one). No term-frequency
    adjustment: the place's frequency would put back the place's u alone."""
    levels = comparison["comparison_levels"]
    for label in PLACE_LEVELS_SPLIT_BY_AREA:
        found = [i for i, level in enumerate(levels) if level.get("label_for_charts") == label]
        if not found or any(level.get("label_for_charts") == f"{label}{AND_SAME_AREA}" for level in levels):
            continue
        level = levels[found[0]]
        half = level["m_probability"] / 2
        levels[found[0]] = dict(level, m_probability=half)
        levels.insert(
            found[0],
            {
                "sql_condition": f'({level["sql_condition"]}) AND list_has_any("area_l", "area_r")',
                "label_for_charts": f"{label}{AND_SAME_AREA}",
                "m_probability": half,
                "u_probability": level["u_probability"] / 100,
            },
        )
