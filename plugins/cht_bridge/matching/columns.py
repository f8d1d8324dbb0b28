"""Fit the model's comparisons to the columns a deployment's data actually has.

A column empty everywhere (no phones in this EMR, no sex recorded) must carry no weight, so its
comparison leaves the model instead of being trained on nothing. Places come in two shapes: codes
(CHT place ids, postcodes, facility codes) that agree exactly or not at all, and names (villages,
suburbs) typed by hand, whose spelling varies: those get a fuzzy level between "same place" and
"same wider area".
"""

from __future__ import annotations

import copy
import re
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


@dataclass(frozen=True)
class Profile:
    """How full each field is (share of people with a value) and what the places look like."""

    filled: dict[str, float]
    place_kind: str  # "code" or "name"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile(people: Sequence[Person], phones: Sequence[str | None]) -> Profile:
    """Measure ``people`` (both lists together): the share holding each field, and the place kind."""
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
    return Profile({key: round(value, 4) for key, value in filled.items()}, kind)


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
            if level.get("is_null_level") or not _reads(level["sql_condition"], unreachable, '"{}_l"')
        ]
    rules = adapted.get("blocking_rules_to_generate_predictions", [])
    reachable = [rule for rule in rules if not _reads(rule["blocking_rule"], unreachable, 'l."{}"')]
    adapted["blocking_rules_to_generate_predictions"] = reachable or rules
    if found.place_kind == "name":
        for comparison in kept:
            if comparison["output_column_name"] == "place":
                _add_fuzzy_place_level(comparison)
    adapted["comparisons"] = kept
    return adapted


def _reads(sql: str, columns: Sequence[str], pattern: str) -> bool:
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
