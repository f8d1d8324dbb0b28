"""A row's place from where its phone is registered in CHT, when the row's answers name none.

A community member who answers a RapidPro flow may name their village (a mapped code the place
table knows), or not. Their phone may still be registered in CHT: to a household member, say, or
to themselves in another record; then the household of that registration is where a new person
belongs, and its health worker is the one to follow up. A reverse pipeline asks for that with a
place code ``phone:<number>`` (alone, or after the answer's code in a list, tried in order):

    mapping:
      place: {expr: "[doc.values.village && doc.values.village.category, 'phone:' + doc.phone]"}

``phone:`` codes are looked up with CHT's contacts-by-phone (the number normalised as the
matcher normalises phones); the place is the parent of the persons registered with it, when they
all share one (a phone shared across households is no answer). Other codes go to the place table.
In reasons and logs a phone code is never shown: only ``a phone's CHT registration``; nor is an
answer that does not look like a code (``code_label``).
"""

from __future__ import annotations

import re
from typing import Any

from cht_bridge.reverse.places import PlaceTable

PREFIX = "phone:"
LABEL = "a phone's CHT registration"
#: Said of a place answer that does not look like a code (free text): never shown as given.
NOT_A_CODE = "an answer that is not a place code (free text: map a coded answer, such as its category)"
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,23}")
_LONG_NUMBER = re.compile(r"\d{7}")  # a phone or national ID number, not a facility code


class RegisteredPlaces:
    """The place table, plus ``phone:<number>`` codes resolved by CHT's contacts-by-phone."""

    def __init__(self, table: PlaceTable, api: Any, region: str = "KE") -> None:
        self.table = table
        self.api = api
        self.region = region
        self._by_phone: dict[str, str | None] = {}

    @property
    def file(self) -> str:
        return self.table.file

    def place_for(self, code: object) -> str | None:
        """The first code of ``code`` (one, or a list tried in order) that names a place."""
        for one in code if isinstance(code, list) else [code]:
            found = self._one(one)
            if found is not None:
                return found
        return None

    def _one(self, code: object) -> str | None:
        if isinstance(code, str) and code.startswith(PREFIX):
            return self._registered(code[len(PREFIX) :])
        return self.table.place_for(code) if code not in (None, False, "") else None

    def _registered(self, raw: str) -> str | None:
        from cht_bridge.matching import normalise_phone

        phone = normalise_phone(raw, self.region)
        if phone is None:
            return None
        if phone not in self._by_phone:
            parents = {
                (doc.get("parent") or {}).get("_id") for doc in self.api.contacts_by_phone(phone) if doc.get("parent")
            }
            parents.discard(None)
            self._by_phone[phone] = parents.pop() if len(parents) == 1 else None
        return self._by_phone[phone]


def code_label(code: object) -> str:
    """A place code as a reason or a log line may show it: never a phone number, never free text.

    The code is often a respondent's answer (a RapidPro flow's ``village`` as typed, an EMR's free
    text field): shown as given, a name or a phone number would reach the inbound ledger's reason
    and the logs. So a code is shown only when it looks like one (``looks_like_code``: a short
    token such as an MFL code, ``MFL-100`` or an org unit UID), which is what a person adding it to
    the place table needs; anything else is ``NOT_A_CODE``.
    """
    if isinstance(code, list):
        return " or ".join(code_label(one) for one in code if one not in (None, False, "")) or "(none)"
    if isinstance(code, str) and code.startswith(PREFIX):
        return LABEL
    return f"'{str(code).strip()}'" if looks_like_code(code) else NOT_A_CODE


def looks_like_code(code: object) -> bool:
    """A short token (letters, digits, ``-_./``; at most 24 characters) that is not a phone or ID number."""
    if isinstance(code, bool) or not isinstance(code, str | int):
        return False
    text = str(code).strip()
    return bool(_CODE.fullmatch(text)) and not _LONG_NUMBER.search(text)
