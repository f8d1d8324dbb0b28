"""The deterministic pass that runs before any scoring.

A shared identifier, or the same phone and date of birth (with names that agree, and a date
that is neither a 1 January default nor marked estimated on either side), settle most
re-appearances with certainty and explain themselves in one word. A phone several existing
people hold (a household or CHW phone, a treatment supporter's) is not such evidence: those
people go on to the probabilistic model, where the phone's frequency weighs it down.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cht_bridge.matching.records import Person


@dataclass(frozen=True)
class Rule:
    """A deterministic finding: ``existing_ids`` are the people the rule points at."""

    kind: str  # "identifier" or "phone_dob"
    existing_ids: tuple[str, ...]


class DeterministicIndex:
    """Lookups of existing people by identifier and by (phone, date of birth)."""

    def __init__(self, existing: Sequence[Person], phones: Sequence[str | None], shared_phone_count: int) -> None:
        self._by_identifier: dict[str, list[str]] = defaultdict(list)
        self._by_phone_dob: dict[tuple[str, str], list[Person]] = defaultdict(list)
        self._phone_holders: dict[str, int] = defaultdict(int)
        self._shared_phone_count = shared_phone_count
        self.identifiers: dict[str, str] = {}
        for person, phone in zip(existing, phones, strict=True):
            if person.identifier:
                self._by_identifier[person.identifier].append(person.id)
                self.identifiers[person.id] = person.identifier
            if phone:
                self._phone_holders[phone] += 1
                if person.date_of_birth and not _estimate(person):
                    self._by_phone_dob[(phone, person.date_of_birth)].append(person)

    def find(self, person: Person, phone: str | None) -> Rule | None:
        """The rule that settles ``person``, if any."""
        if person.identifier and person.identifier in self._by_identifier:
            return Rule("identifier", tuple(sorted(self._by_identifier[person.identifier])))
        if not (phone and person.date_of_birth) or self.phone_is_shared(phone):
            return None
        if _estimate(person):
            return None  # a default date (only the year was known) is no proof
        found = [
            existing
            for existing in self._by_phone_dob.get((phone, person.date_of_birth), [])
            if not (existing.sex and person.sex and existing.sex != person.sex) and _names_agree(existing, person)
        ]
        return Rule("phone_dob", tuple(sorted(p.id for p in found))) if found else None

    def phone_is_shared(self, phone: str) -> bool:
        """Whether several existing people hold ``phone`` (household-level evidence only)."""
        return self._phone_holders.get(phone, 0) >= self._shared_phone_count


def _estimate(person: Person) -> bool:
    """A 1 January default or a date marked estimated (CHT's form writes an age as the entry day
    that many years back: household members of one entered age, registered on one day, share it)."""
    return bool(person.date_of_birth_estimated or (person.date_of_birth or "").endswith("-01-01"))


def _names_agree(one: Person, other: Person) -> bool:
    """Both names of two-token people, the one name of one-token people (order free), or no name."""
    mine, theirs = set(one.name_tokens), set(other.name_tokens)
    if not mine or not theirs:
        return True
    return len(mine & theirs) >= min(2, len(mine), len(theirs))
