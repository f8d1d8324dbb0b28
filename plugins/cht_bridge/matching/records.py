"""The person record the matcher compares, and the cleaning that makes two sources comparable.

CHT and EMRs disagree on case, accents, punctuation, how sex is coded and how dates are written.
Cleaning happens once, when a :class:`Person` is built, so every later step compares like with
like. That includes how an *estimated* date of birth is written: CHT's person form turns an age
into the entry day's month and day that many years back and says so only in
``date_of_birth_method: approx``; EMRs carry a flag (OpenMRS ``birthdateEstimated``); registers
write 1 January. A :class:`Person` keeps the date as written, with the flag: two equal written
dates are the same date (our own forward pipelines send CHT's date to the EMR as written). Where
dates are compared by year the flagged date is its estimate (:func:`estimated_birth`), the model's
estimated kind (``features.py``). Phones stay as given here: turning them into E.164 needs the
facility's region, which the matcher's configuration carries.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cht_bridge.flags import PARTIAL_DATE, flag

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
#: How far before a date counted back from an age the birth lies, on average: the age is in
#: completed years, so the birth is within the year before the written date (half a year back).
_HALF_YEAR_MONTHS = 6
#: Within these days of the entry day's month and day, a CHT ``approx`` date was counted back in
#: whole years (``reported_date`` is UTC, the form's ``today()`` local); further, months were entered.
_ENTRY_SLACK_DAYS = 2
#: Dates of birth before this year are typos or placeholders (``0001-03-01``): no date.
_FIRST_BIRTH_YEAR = 1800
#: CHT's ``reported_date`` is epoch milliseconds; a smaller stamp (seconds: 1.8e9 today) is not one.
_MILLISECONDS_FROM = 1e11
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
        EMR's ``birthdateEstimated``, as :func:`cht_bridge.flags.flag` reads it), or the date is
        written to the year or the month only. The date stays as written; where dates are compared
        by year it is its estimate (:func:`estimated_birth`). ``False`` without a date.
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
        estimated = born is not None and date_is_estimate(self.date_of_birth, self.date_of_birth_estimated)
        set_(self, "date_of_birth", born)
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

    @property
    def birth_compared(self) -> date | None:
        """The date of birth where dates are compared by year: the written date, or for an
        estimate the 1 January of its likely year (:func:`estimated_birth`)."""
        if self.date_of_birth is None:
            return None
        written = date.fromisoformat(self.date_of_birth)
        return estimated_birth(written) if self.date_of_birth_estimated else written


def estimated_birth(written: date) -> date:
    """An estimated date of birth as the model's estimated kind: 1 January of its likely year.

    A 1 January date is a year's estimate already (registers, OpenMRS's estimate from an age,
    FHIR's ``1990``): its year. Any other date was counted back from an age on the day it was
    entered (CHT's form: ``add-date(today(), 0 - age_years, 0 - age_months)``); the age is in
    completed years, so the birth lies within the year before the date, and the year of the date
    less six months is the likely one (the year before when written in January to June): right
    for three births in four where entry and birth days are uniform, where the year as written is
    right for one in two. Derived from the written date each time, so a person read back from a
    file it was written to is the same person. An estimate entered on 1 January keeps its year (a
    year off); one with months entered is no year's estimate (``from_cht_person``).
    """
    if (written.month, written.day) == (1, 1):
        return written
    # by months, not days: a date sent to the month (FHIR's ``1990-04``, how the forward FHIR
    # pipeline sends a CHT estimate) comes back as ``1990-04-01`` and gets the same year
    return date(written.year - (written.month <= _HALF_YEAR_MONTHS), 1, 1)


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
    answer when an age was entered; the other answer is empty) makes the date an estimate, unless
    the document's ``reported_date`` shows months were entered with the age (an infant's "3
    months"): the date is then within a month of the birth and is compared as a date.

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
        date_of_birth_estimated=flag(doc.get("date_of_birth_method")) and not _months_entered(doc),
    )


def _months_entered(doc: dict[str, Any]) -> bool:
    """Whether a CHT ``approx`` date was counted back with months as well as years: its month and
    day are not the entry day's (``reported_date``, epoch milliseconds). ``False`` when unknown."""
    born, reported = clean_date(doc.get("date_of_birth")), doc.get("reported_date")
    if born is None or isinstance(reported, bool) or not isinstance(reported, int | float | str):
        return False
    if doc.get("source_ref"):
        return False  # written by a reverse pipeline (``reverse.run.new_person``): CHT stamped the day it was created
    try:
        stamp = float(reported)
        if abs(stamp) < _MILLISECONDS_FROM:
            return False  # seconds, not CHT's milliseconds: which day it means is unknown
        entered = datetime.fromtimestamp(stamp / 1000, UTC).date()
        written = date.fromisoformat(born)
        same_year = written.replace(year=entered.year, day=min(written.day, 28) if written.month == 2 else written.day)
    except (ValueError, OverflowError, OSError):
        return False
    apart = abs((same_year - entered).days)
    return min(apart, 365 - apart) > _ENTRY_SLACK_DAYS


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
    ``YYYY`` or ``YYYY-MM`` (FHIR's partial dates, an estimate: the year's or the month's first day); and
    ``YYYYMMDD`` with HL7 v2's optional time and offset after it (``YYYYMMDD[HH[MM[SS[.S…]]]][+/-ZZZZ]``:
    FEBRL, HL7 v2, many EMR exports). Anything else is None. A date after today is kept: compared,
    a typo (2019 for 2009) still says something, and the reading does not move with the day it runs;
    only a person written to CHT never gets one (``reverse.run.new_person``).
    """
    if isinstance(raw, datetime):
        day = raw.date()
    elif isinstance(raw, date):
        day = raw
    else:
        day = _parse_date(_date_text(raw))
    return day.isoformat() if day is not None and day.year >= _FIRST_BIRTH_YEAR else None


def _date_text(raw: object) -> str | None:
    """A written date's text as :func:`clean_date` reads it: stripped, anything after a ``T`` or a space dropped."""
    if raw is None or isinstance(raw, date):
        return None
    text = str(raw).strip()
    return text.split("T")[0].split(" ")[0] or None


def _parse_date(text: str | None) -> date | None:
    if not text:
        return None
    if PARTIAL_DATE.fullmatch(text):  # FHIR's year or month: its first day
        return date(int(text[:4]), int(text[5:7] or 1), 1)
    if _COMPACT_DATE.fullmatch(text):  # YYYYMMDD (FEBRL), HL7 v2's TS/DTM
        text = f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def date_is_estimate(raw_date: object, estimated: object) -> bool:
    """Whether a date of birth is an estimate: its source flags it (:func:`cht_bridge.flags.flag`:
    ``approx``, ``true``, ``1``, ``1.0``, ``yes``; CHT's other answer is empty) or it is written to
    the year or the month only (read as :func:`clean_date` reads it: ``1991``, ``1991-08``,
    ``1991-08T00:00``, the number ``1991``)."""
    text = _date_text(raw_date)
    return bool(flag(estimated)) or (text is not None and bool(PARTIAL_DATE.fullmatch(text)))


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
