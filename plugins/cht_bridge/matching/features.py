"""Turn people into the columns the Splink model compares, with value frequencies.

Frequencies feed Splink's term-frequency adjustment: agreeing on a rare name, date or phone is
stronger evidence than agreeing on ``Otieno``, 1 January 1980, or a phone a whole household
shares. They are counted over both lists (they describe one population) and smoothed towards a
fixed prior with a pseudo-count, so that a list of ten people does not make every name look
common (10 %) and kill the evidence.

An estimated date of birth (``Person.date_of_birth_estimated``) meets the model's date levels
(``model.DATE_OF_BIRTH``) this way. ``date_of_birth`` holds the date as written, estimate or not;
``birth_year``, ``birth_month`` and ``birth_day`` hold an estimate as 1 January of its likely
year (``records.estimated_birth``), the kind the model's "estimated" levels were written for (only
a year known, written 1 January). Level by level:

- equal written dates: "same date", weighed by the written date's frequency, unless the written
  date is 1 January ("same 1 January (estimated) date", which tests the written date). A copied
  estimate is as strong as a copied date: our forward pipelines send CHT's date to the EMR as
  written, and two strangers rarely share an entry day's month and day and a year;
- an estimate and a different date of the same likely year: "same year, both dates estimated"
  when the other is an estimate too, else "same year, one side only a year (1 January)"; of
  years 1-2 apart, when both are estimates: "1-2 years apart, both dates estimated", else "1-2
  years apart"; of years 3-9 apart, when either is an estimate: "3-9 years apart (age
  re-estimated)", else (two full dates) "same birthday, last digit of the year off" when the day,
  the month and the decade agree, else "3-9 years apart, both dates full";
- an estimate never reaches "same birthday, year 1-2 apart" or "same year, day or month wrong" by
  its entry day's month and day, which say nothing of the birthday.

The frequency of a written date is counted within the kind of the level equal dates reach
(``Frequencies.date_tf``): 1 January or not, marked estimated or not.
Blocking rules on ``date_of_birth`` find copied dates, the ones on ``birth_year`` the estimate's year.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import date
from functools import lru_cache, partial
from itertools import combinations, permutations

import pyarrow as pa

from cht_bridge.matching.phones import normalise_phone
from cht_bridge.matching.records import Person

# Prior share of people carrying a given name token, date of birth, phone or place, and the
# pseudo-count of people that prior is worth (see the module docstring).
_PSEUDO_COUNT = 1000
_PRIOR = {"token": 1 / 2000, "date_of_birth": 1 / (365 * 60), "phone": 1e-5, "place": 1e-3, "area": 1e-3}
_MIN_TF = 1e-9
#: A single name's ``name_joins`` key: equal to no name token (tokens are never empty).
_NO_JOIN = ""
#: The key of a trained model's ``cht_bridge`` block saying its dates' frequencies are by kind.
DATES_BY_KIND = "dates_by_kind"


@lru_cache(maxsize=200_000)
def _phone(raw: object, region: str) -> str | None:
    return normalise_phone(raw, region)


def e164(person: Person, region: str) -> str | None:
    """The person's phone as E.164 under ``region`` (cached: lists repeat household phones)."""
    raw = person.phone
    if raw is None:
        return None
    return _phone(raw if isinstance(raw, str | int | float) else str(raw), region)


def build_table(
    people: Sequence[Person], keys: Sequence[str], phones: Sequence[str | None], counts: Frequencies
) -> pa.Table:
    """Columns for Splink: one row per person, ``unique_id`` taken from ``keys``.

    :param people: cleaned people.
    :param keys: unique row ids (the matcher's own, so ids from two systems cannot collide).
    :param phones: the people's E.164 phones, in the same order.
    :param counts: frequencies over the whole population being matched.
    """
    rows: dict[str, list] = {name: [] for name in _COLUMNS}
    for key, person, phone in zip(keys, people, phones, strict=True):
        tokens = person.name_tokens
        written = date.fromisoformat(person.date_of_birth) if person.date_of_birth else None
        born = person.birth_compared  # an estimate's likely year, 1 January (``estimated_dates``)
        rows["unique_id"].append(key)
        rows["names"].append(tokens or None)
        rows["name_key"].append(" ".join(tokens) or None)
        rows["name_pairs"].append([f"{a} {b}" for a, b in combinations(tokens, 2)] or None)
        # Two names written as one ("graceakinyi"), in either order: a blocking key that finds
        # the person whose every token differs from the run-together one. A single name has no
        # join: its key is "", which no token equals (standing for itself, it joined that row to
        # everyone sharing the token, "Mary" x every "mary"). Not None or []: a rule explodes this
        # column on both sides, and the row would leave the rule that finds it as the other
        # side's ``names`` ("graceakinyi" = a join of "Grace Akinyi").
        joins = [a + b for a, b in permutations(tokens, 2)] or [_NO_JOIN]
        rows["name_joins"].append(joins if tokens else None)
        # A name and the first letter of another: finds a row whose other name has a typo when
        # nothing else (date of birth, place, phone) is there to block on ("mrgret mugambi" for
        # "margret mugambi"); typists rarely get a name's first letter wrong.
        rows["name_initials"].append([f"{a} {b[0]}" for a, b in permutations(tokens, 2)] or None)
        # Narrower, for names common enough that the first letter makes too many pairs: a name and
        # the first three, or the last three, letters of another (one typo leaves one end intact).
        ends = [key for a, b in permutations(tokens, 2) for key in (f"{a} {b[:3]}", f"{a} <{b[-3:]}")]
        rows["name_ends"].append(ends or None)
        rows["sex"].append(person.sex)
        rows["date_of_birth"].append(written)
        rows["birth_year"].append(born.year if born else None)
        rows["birth_month"].append(born.month if born else None)
        rows["birth_day"].append(born.day if born else None)
        rows["phone"].append(phone)
        rows["phone9"].append(phone[-9:] if phone else None)
        rows["place"].append(person.place)
        rows["area"].append(list(person.area) or None)
        rows["area_key"].append(person.place)
        places = list(dict.fromkeys([*([person.place] if person.place else []), *person.area]))
        rows["places"].append(places or None)
    return pa.table({name: pa.array(values, type=_COLUMNS[name]) for name, values in rows.items()})


def tf_tables(tables: Sequence[pa.Table], counts: Frequencies, dates_by_kind: bool = False) -> dict[str, pa.Table]:
    """Term-frequency lookups (value → share of people) for every value in ``tables``.

    Splink joins these onto the records (``register_term_frequency_lookup``).

    :param dates_by_kind: a date's frequency within its kind (``Frequencies.date_tf``), as models
        trained since that change expect (``DATES_BY_KIND`` in their ``cht_bridge`` block); the
        shipped model's hand-set values were checked with plain frequencies and keep them.
    """
    lookups: dict[str, pa.Table] = {}
    for column, kind in (
        ("name_key", "names"),
        ("date_of_birth", "date_of_birth"),
        ("phone", "phone"),
        ("place", "place"),
        ("area_key", "area"),
    ):
        values = sorted({value for table in tables for value in table.column(column).to_pylist() if value is not None})
        if kind == "names":
            shares = [counts.name_tf(value.split()) for value in values]
        elif kind == "date_of_birth":
            frequency = counts.date_tf if dates_by_kind else partial(counts.tf, kind)
            shares = [frequency(value.isoformat()) for value in values]
        else:
            shares = [counts.tf(kind, value) for value in values]
        value_type = _COLUMNS[column]
        lookups[column] = pa.table(
            {column: pa.array(values, type=value_type), f"tf_{column}": pa.array(shares, type=pa.float64())}
        )
    return lookups


def _places(person: Person) -> set[str]:
    return {*([person.place] if person.place else []), *person.area}


class Frequencies:
    """Smoothed share of people holding each name token, date of birth, phone and place."""

    def __init__(self, people: Sequence[Person], phones: Sequence[str | None]) -> None:
        self._people = len(people)
        self._counts: dict[str, Counter] = {
            "token": Counter(token for person in people for token in person.name_tokens),
            "date_of_birth": Counter(person.date_of_birth for person in people if person.date_of_birth),
            "phone": Counter(phone for phone in phones if phone),
            "place": Counter(person.place for person in people if person.place),
            # Everyone under an area (CHW area, health centre) holds it: a place's share here is
            # how many people live in or under it.
            "area": Counter(value for person in people for value in _places(person)),
        }

        dates = self._counts["date_of_birth"]
        estimated = sum(count for value, count in dates.items() if value.endswith("-01-01"))
        #: share of the written dates of birth that are 1 January: equal written dates reach "same
        #: 1 January (estimated) date" when 1 January and "same date" otherwise, flagged or not
        #: (``model.DATE_OF_BIRTH``), so the kind a frequency is counted within follows the written
        #: date: counted as an estimate, a copied CHT ``approx`` date weighed 2.7 bits more than a
        #: copied exact one at the same level
        self._estimated_dates = estimated / max(sum(dates.values()), 1)

    def count(self, kind: str, value: str | None) -> int:
        """How many people in the population hold ``value``."""
        return self._counts[kind][value] if value else 0

    def tf(self, kind: str, value: str | None) -> float | None:
        """Share of people holding ``value``, smoothed towards the prior for ``kind``."""
        if not value:
            return None
        share = (self._counts[kind][value] + _PSEUDO_COUNT * _PRIOR[kind]) / (self._people + _PSEUDO_COUNT)
        return max(share, _MIN_TF)

    def date_tf(self, iso: str) -> float | None:
        """A date's share *within the dates of its kind* times its share of all people.

        The model compares equal 1 January dates (estimates: only the year was known) and other
        equal dates in levels of their own. Within a level that only one kind of
        date reaches, the weight of agreeing on ``v`` is m / (share(v) * share(kind)) (the chance
        that two strangers both hold v, over the chance that a true pair at this level holds it),
        not m / share(v): where a fifth of the dates are 1 January, that is 2.3 bits more for two equal estimated dates.
        """
        share = self.tf("date_of_birth", iso)
        if share is None:
            return None
        kind = self._estimated_dates if iso.endswith("-01-01") else 1.0 - self._estimated_dates
        return max(share * min(max(kind, 0.05), 1.0), _MIN_TF)

    def name_tf(self, tokens: Sequence[str]) -> float:
        """Chance that a random person has exactly these name tokens (tokens taken as independent)."""
        log_share = sum(math.log(self.tf("token", token) or 1.0) for token in tokens)
        return max(math.exp(log_share), _MIN_TF)


_COLUMNS: dict[str, pa.DataType] = {
    "unique_id": pa.string(),
    "names": pa.list_(pa.string()),
    "name_key": pa.string(),
    "name_pairs": pa.list_(pa.string()),
    "name_joins": pa.list_(pa.string()),
    "name_initials": pa.list_(pa.string()),
    "name_ends": pa.list_(pa.string()),
    "sex": pa.string(),
    "date_of_birth": pa.date32(),
    "birth_year": pa.int32(),
    "birth_month": pa.int32(),
    "birth_day": pa.int32(),
    "phone": pa.string(),
    "phone9": pa.string(),
    "place": pa.string(),
    "area": pa.list_(pa.string()),
    "area_key": pa.string(),
    "places": pa.list_(pa.string()),
}
