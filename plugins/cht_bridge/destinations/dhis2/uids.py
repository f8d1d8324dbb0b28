"""Deterministic DHIS2 UIDs derived from CHT ids, so a retried or re-run import updates, never duplicates.

DHIS2 UIDs are 11 characters, a letter first, then letters and digits (destinations.md §1.2).
A crashed task that sends a report again must name the same tracked entity, enrollment and event
as the first try, without stored state: the UID is a hash of the CHT id and what the object is
(``sha256`` of a namespace and the id; the first character from the 52 letters, ten more from the
62 letters and digits: about 4·10¹⁹ UIDs, so a collision among a country's records is negligible).
"""

from __future__ import annotations

import hashlib
import re
import string

LETTERS = string.ascii_letters
ALPHANUMERICS = string.digits + string.ascii_letters
UID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")


def is_uid(value: object) -> bool:
    """Whether ``value`` has DHIS2's UID format."""
    return isinstance(value, str) and UID_RE.match(value) is not None


def uid(namespace: str, cht_id: str) -> str:
    """The UID of the DHIS2 object ``namespace`` names for the CHT id ``cht_id``."""
    n = int.from_bytes(hashlib.sha256(f"cht-bridge\x00{namespace}\x00{cht_id}".encode()).digest(), "big")
    n, first = divmod(n, len(LETTERS))
    chars = [LETTERS[first]]
    for _ in range(10):
        n, i = divmod(n, len(ALPHANUMERICS))
        chars.append(ALPHANUMERICS[i])
    return "".join(chars)


def tracked_entity_uid(person_id: str) -> str:
    """A CHT person is one tracked entity, whatever program enrolls them."""
    return uid("trackedEntity", person_id)


def enrollment_uid(program: str, person_id: str) -> str:
    """One enrollment of a person in a program."""
    return uid(f"enrollment\x00{program}", person_id)


def event_uid(program: str, doc_id: str) -> str:
    """One event per CHT report and program (two pipelines sending a report to two programs make two)."""
    return uid(f"event\x00{program}", doc_id)
