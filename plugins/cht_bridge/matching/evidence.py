"""The evidence behind a candidate, field by field, in words a reviewer reads at a glance.

Each compared field contributes a match weight (bits: + for "same person", - against). The
reviewer sees which level the pair reached ("same date of birth", "phone differs in one digit")
and, where the value's frequency moved the weight, whether it is common or rare among the people
matched ("the name is a common one in this area"). Only level names and weights: no names, dates
or phones, so the words may be stored with the candidate in the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

# (comparison, level label) → words; a level not listed is shown by its own label.
_WORDS = {
    ("names", "same name tokens"): "same names",
    ("names", "one name is the other plus/minus tokens"): "same names, one has a name more",
    ("names", "every name the same or one letter apart"): "every name the same or one letter apart",
    ("names", ">= 2 tokens shared (e.g. surname changed)"): "two names shared, another differs",
    ("names", ">= 2 tokens alike, one letter apart"): "names differ in one letter",
    ("names", ">= 2 tokens alike (Jaro-Winkler >= 0.92)"): "names spelt alike",
    ("names", ">= 2 tokens shared or one letter apart"): "names differ in one letter",
    ("names", "two names written as one"): "two names written as one",
    ("names", "two names written as one, alike"): "two names written as one, spelt differently",
    ("names", "O-/A- name pair, other sex"): "O-/A- name pair of the other sex (a twin or sibling?)",
    ("names", "one token shared, same phone (a relative?)"): "one name shared in a household (a relative?)",
    ("names", "one token shared"): "only one name shared",
    ("names", "one token alike"): "only one name alike",
    ("names", "names differ"): "names differ",
    ("sex", "same sex"): "same sex",
    ("sex", "sex differs"): "sex differs",
    ("date_of_birth", "same 1 January (estimated) date"): "same estimated date of birth (1 January)",
    ("date_of_birth", "same date"): "same date of birth",
    ("date_of_birth", "same year, day and month swapped"): "date of birth with day and month swapped",
    ("date_of_birth", "same year, day or month wrong or swapped"): "birth year same, day or month differs",
    ("date_of_birth", "same year, both dates estimated (1 January)"): (
        "same birth year, both dates estimated (marked so or 1 January)"
    ),
    ("date_of_birth", "same year, one side only a year (1 January)"): "same birth year (one side knows only the year)",
    ("date_of_birth", "same year"): "same birth year",
    ("date_of_birth", "same birthday, year 1-2 apart"): "same birthday, birth year 1-2 apart",
    ("date_of_birth", "1-2 years apart, both dates estimated (1 January)"): (
        "born 1-2 years apart, both dates estimated (marked so or 1 January)"
    ),
    ("date_of_birth", "1-2 years apart"): "born 1-2 years apart",
    ("date_of_birth", "same birthday, last digit of the year off"): "same birthday, one digit of the year differs",
    ("date_of_birth", "3-9 years apart, both dates full"): "born 3-9 years apart, both dates exact",
    ("date_of_birth", "3-9 years apart (age re-estimated)"): "born 3-9 years apart",
    ("date_of_birth", "10+ years apart"): "born 10 or more years apart",
    ("phone", "same E.164 number"): "same phone",
    ("phone", "same last 9 digits"): "same phone, other country code",
    ("phone", "one digit off"): "phone differs in one digit",
    ("phone", "numbers differ"): "phones differ",
    ("place", "phone agrees already (place counted once)"): "same household (counted with the phone)",
    ("place", "same place and same area"): "same place, and the same area too (e.g. suburb and postcode)",
    ("place", "same place"): "same place",
    ("place", "place names alike and same area"): "place names spelt alike, and the same area too",
    ("place", "place names alike"): "place names spelt alike",
    ("place", "same wider area"): "same wider area",
    ("place", "place unknown, same area"): "place unknown, same area",
    ("place", "places differ, same area"): "other place in the same area",
    ("place", "places differ, an area unknown"): "places differ (area unknown)",
    ("place", "places differ (people move)"): "places differ",
}
_FIELD_NAMES = {"names": "name", "date_of_birth": "date of birth", "place": "place", "phone": "phone", "sex": "sex"}
#: A frequency adjustment this large (bits) is worth saying.
TF_NOTE_BITS = 1.0

Evidence = tuple[str, str, float]  # (comparison, words, match weight in bits)


def words(comparison: str, level: str | None, tf_bits: float = 0.0) -> str:
    """The words for one field's level, with a note when the value's frequency moved its weight."""
    text = _WORDS.get((comparison, level or ""), level or f"{_FIELD_NAMES.get(comparison, comparison)} missing")
    if tf_bits <= -TF_NOTE_BITS:
        text += f"; the {_FIELD_NAMES.get(comparison, comparison)} is a common one in this area"
    elif tf_bits >= TF_NOTE_BITS:
        text += f"; the {_FIELD_NAMES.get(comparison, comparison)} is rare in this area"
    return text


def describe(evidence: Sequence[Evidence]) -> str:
    """One line: every field's words and weight, strongest first (e.g. for a log-free reason)."""
    ordered = sorted(evidence, key=lambda item: -abs(item[2]))
    return "; ".join(f"{text} ({weight:+.1f})" for _, text, weight in ordered)
