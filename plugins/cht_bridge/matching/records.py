"""The person record the matcher compares, and the cleaning that makes two sources comparable.

CHT and EMRs disagree on case, accents, punctuation, how sex is coded and how dates are written.
Cleaning happens once, when a :class:`Person` is built, so every later step compares like with
like. That includes how an *estimated* date of birth is written: CHT's person form turns an age
into today's month and day that many years back and says so only in ``date_of_birth_method:
approx``; EMRs carry a flag (OpenMRS ``birthdateEstimated``); registers write 1 January. The
model knows one kind of estimate, a year with 1 January (``model.py``), so a date flagged as
estimated keeps its year only and becomes that kind. Phones stay as given here: turning them into
E.164 needs the facility's region, which the matcher's configuration carries.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

_NOT_LETTER = re.compile(r"[^a-z\s]+")
_HONORIFICS = frozenset(
    {"mr", "mrs", "ms", "miss", "dr", "prof", "rev", "fr", "sr", "sis", "hon", "eng", "pastor", "bishop"}
)
_SEX_CODES = {
    "m": "male",
    "male": "male",
    "man": "male",
    "boy": "male",
    "1": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
    "girl": "female",
    "2": "female",
}
#: Flag values that say a date of birth is an estimate: CHT's ``date_of_birth_method`` (``approx``)
#: and an EMR's birthdate-estimated boolean however a file writes it. Anything else (``calendar``,
#: ``false``, garbage) is not an estimate: a wrong flag must not throw a real date away.
_ESTIMATED = frozenset({"approx", "approximate", "estimated", "true", "t", "1", "yes", "y"})
#: A date written only to the year or the month (FHIR's ``1990`` / ``1990-04``): an estimate by its
#: precision. OpenMRS FHIR2 writes ``birthdateEstimated`` that way and reads it back so.
_PARTIAL_DATE = re.compile(r"(18|19|20)\d\d(-(0[1-9]|1[0-2]))?")
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d")
#: ``YYYYMMDD``, then HL7 v2's optional ``HH[MM[SS[.S…]]]`` and ``+/-ZZZZ`` offset (the date is kept).
_COMPACT_DATE = re.compile(r"(?:18|19|20)\d{6}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?(?:[+-]\d{4})?")


@dataclass(frozen=True)
class Person:
    """One person as the matcher sees them; values are cleaned on construction.

    :param id: the record's id in its own system (CHT ``_id`` or the EMR row id).
    :param given_name: given and middle names, in any order; cleaned to lower-case tokens.
    :param family_name: family (sur)name tokens; a swap with ``given_name`` is tolerated.
    :param sex: ``male``, ``female`` or ``None`` (``M``, ``F``, ``1``, ``2`` … are understood).
    :param date_of_birth: ISO ``YYYY-MM-DD`` or ``None`` (``DD/MM/YYYY``, ``YYYYMMDD`` and a bare year parse).
    :param phone: as given; normalised to E.164 by the matcher under its configured region.
    :param place: the CHT place (household/CHW area) id or an EMR village, if known.
    :param area: ids of wider areas the person belongs to (the CHT lineage).
    :param identifier: a shared identifier (national id, EMR id) both systems may hold.
    :param date_of_birth_estimated: the source says the date is an estimate (CHT ``approx``, an
        EMR's ``birthdateEstimated``; see :func:`clean_estimated`). The date then keeps its year
        only (``YYYY-01-01``), the model's estimated kind, and the flag stays so a question can say so.
    """

    id: str
    given_name: str | None = None
    family_name: str | None = None
    sex: str | None = None
    date_of_birth: str | None = None
    phone: str | int | float | None = None
    place: str | None = None
    area: tuple[str, ...] = field(default_factory=tuple)
    identifier: str | None = None
    date_of_birth_estimated: bool | str | int | None = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "id", str(self.id))
        set_(self, "given_name", clean_name(self.given_name))
        set_(self, "family_name", clean_name(self.family_name))
        set_(self, "sex", clean_sex(self.sex))
        born = clean_date(self.date_of_birth)
        estimated = date_is_estimate(self.date_of_birth, self.date_of_birth_estimated) and born is not None
        set_(self, "date_of_birth", f"{born[:4]}-01-01" if estimated else born)
        set_(self, "date_of_birth_estimated", estimated)
        set_(self, "phone", _blank_to_none(self.phone))
        set_(self, "place", _text(self.place))
        set_(self, "area", _clean_area(self.area))
        set_(self, "identifier", _clean_identifier(self.identifier))

    @property
    def name_tokens(self) -> list[str]:
        """All name tokens, de-duplicated and sorted, so order and given/family swaps do not matter."""
        tokens = f"{self.given_name or ''} {self.family_name or ''}".split()
        return sorted(set(tokens))


def person_from_name(id: str, name: str | None, **fields: Any) -> Person:
    """Build a :class:`Person` from one full-name string (how CHT stores names).

    The last token is taken as the family name; the matcher compares token sets, so a wrong split
    costs nothing.
    """
    tokens = (clean_name(name) or "").split()
    given, family = (" ".join(tokens[:-1]) or None, tokens[-1]) if tokens else (None, None)
    return Person(id=id, given_name=given, family_name=family, **fields)


def from_cht_person(doc: dict[str, Any], identifier_field: str | None = None) -> Person:
    """Turn a CHT person document into a :class:`Person`.

    ``place`` is the parent (household or CHW area) and ``area`` every ancestor from the minified
    lineage (``parent: {_id, parent: {...}}``), so people who moved house within a CHW area still
    share an area with their old record. ``date_of_birth_method: approx`` (the person form's
    answer when an age was entered) makes the date an estimate.

    :param doc: the CHT ``person``/``contact`` document.
    :param identifier_field: the document property holding a shared identifier, if any.
    """
    ancestors: list[str] = []
    parent = doc.get("parent")
    while isinstance(parent, dict) and parent.get("_id"):
        ancestors.append(str(parent["_id"]))
        parent = parent.get("parent")
    return person_from_name(
        str(doc.get("_id")),
        doc.get("name"),
        sex=doc.get("sex") or doc.get("gender"),
        date_of_birth=doc.get("date_of_birth"),
        phone=doc.get("phone"),
        place=ancestors[0] if ancestors else None,
        area=tuple(ancestors),
        identifier=doc.get(identifier_field) if identifier_field else None,
        date_of_birth_estimated=doc.get("date_of_birth_method"),
    )


def clean_name(raw: object) -> str | None:
    """Lower-case, strip accents and punctuation, drop honorifics; ``None`` when nothing is left."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFKD", str(raw))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _NOT_LETTER.sub(" ", text.replace("'", "").replace("\u2019", ""))
    tokens = [token for token in text.split() if token not in _HONORIFICS]
    return " ".join(tokens) or None


def clean_sex(raw: object) -> str | None:
    """Map the many codings of sex to ``male``/``female``; anything else is unknown."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if text.endswith(".0"):  # a spreadsheet turned 1/2 into 1.0/2.0
        text = text[:-2]
    return _SEX_CODES.get(text)


def clean_date(raw: object) -> str | None:
    """Parse a date of birth to ISO; a bare year becomes 1 January (how registers default it).

    Read: ``datetime``/``date`` objects; ``YYYY-MM-DD``, ``DD/MM/YYYY``, ``DD-MM-YYYY``,
    ``DD.MM.YYYY``, ``YYYY/MM/DD`` (anything after a ``T`` or a space dropped); a bare year
    ``YYYY`` or ``YYYY-MM`` (FHIR's partial dates: the year's 1 January, an estimate); and
    ``YYYYMMDD`` with HL7 v2's optional time and offset after it (``YYYYMMDD[HH[MM[SS[.S…]]]][+/-ZZZZ]``:
    FEBRL, HL7 v2, many EMR exports). Anything else is None.
    """
    if raw is None:
        return None
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    text = str(raw).strip()
    if not text:
        return None
    text = text.split("T")[0].split(" ")[0]
    if _PARTIAL_DATE.fullmatch(text):
        return f"{text[:4]}-01-01"
    if _COMPACT_DATE.fullmatch(text):  # YYYYMMDD (FEBRL), HL7 v2's TS/DTM
        text = f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def clean_estimated(raw: object) -> bool:
    """Whether a flag value says the date of birth is an estimate (case and spaces ignored).

    ``True``/``1``/``approx``/``yes``/``estimated`` are; ``False``, ``0``, ``calendar`` (CHT's
    method for an entered date), empty and unknown values are not.
    """
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, float) and raw == raw and raw.is_integer():
        raw = int(raw)  # a spreadsheet's 1.0
    return str(raw).strip().lower() in _ESTIMATED


def date_is_estimate(raw_date: object, flag: object) -> bool:
    """Whether a date of birth is an estimate: its source flags it (:func:`clean_estimated`) or it
    is written only to the year or the month."""
    return clean_estimated(flag) or (isinstance(raw_date, str) and bool(_PARTIAL_DATE.fullmatch(raw_date.strip())))


def _blank_to_none(raw: Any) -> Any:
    """``None`` for empty strings and NaN (an empty spreadsheet cell); numbers stay numbers."""
    if raw is None or (isinstance(raw, float) and raw != raw):
        return None
    if isinstance(raw, int | float):
        return raw
    text = str(raw).strip()
    return text or None


def _text(raw: object) -> str | None:
    value = _blank_to_none(raw)
    return None if value is None else str(value)


def _clean_area(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = raw.replace(";", " ").replace(",", " ").replace("|", " ").split()
    return tuple(dict.fromkeys(str(item).strip() for item in raw if str(item).strip()))


def _clean_identifier(raw: object) -> str | None:
    """Compare identifiers without spaces, dashes or slashes, upper-cased."""
    text = _text(raw)
    return (re.sub(r"[\s\-/]", "", text).upper() or None) if text else None
