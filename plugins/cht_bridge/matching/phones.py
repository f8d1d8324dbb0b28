"""Phone numbers to E.164, the key the matcher compares on.

EMR exports and CHT forms write the same Kenyan mobile as ``0712345678``, ``712345678``,
``+254712345678``, ``00254712345678``, ``0712 345 678`` or, after a trip through a spreadsheet,
``712345678.0`` and ``7.12345678E8``. ``phonenumbers`` handles most of these under a default
region, but not the spreadsheet artefacts, not ``00`` prefixes (Kenya's international prefix is
``000``), and not two numbers in one field; placeholders such as ``0700000000`` even validate as
real mobiles. This module cleans those cases first, then lets ``phonenumbers`` decide.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import phonenumbers

_SPREADSHEET_FLOAT = re.compile(r"^\s*\+?(\d+(?:\.\d+)?[eE]\+?\d+|\d+\.0+)\s*$")
_CHUNK = re.compile(r"\+?\d[\d\s\-().]{5,}\d")
_PLACEHOLDER_NATIONAL = {"0123456789", "0987654321", "1234567890"}


def normalise_phone(raw: object, region: str = "KE") -> str | None:
    """Return the first valid, non-placeholder number in ``raw`` as E.164, else ``None``.

    :param raw: a phone field as found (string, int or float from a spreadsheet), may be empty.
    :param region: ISO country whose national format applies to numbers without a country code;
        decisive, because ``0712345678`` is Kenyan under ``KE`` and Ugandan under ``UG``.
    """
    text = _undo_spreadsheet(raw)
    if not text:
        return None
    for chunk in _CHUNK.findall(text):
        for candidate in _numbers_in(chunk, region):
            if phonenumbers.is_valid_number(candidate) and not _is_placeholder(candidate):
                return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    return None


def _undo_spreadsheet(raw: object) -> str:
    """Turn ``712345678.0``, ``7.12345678E8`` and float cells back into digit strings."""
    if raw is None:
        return ""
    if isinstance(raw, float):
        if raw != raw:  # NaN: an empty spreadsheet cell
            return ""
        return str(int(raw)) if raw.is_integer() else str(raw)
    text = str(raw).strip()
    if _SPREADSHEET_FLOAT.match(text):
        try:
            value = Decimal(text.lstrip("+"))
        except InvalidOperation:
            return text
        if value == value.to_integral_value():
            return str(int(value))
    return text


def _numbers_in(chunk: str, region: str) -> list[phonenumbers.PhoneNumber]:
    """Parse one run of digits; if it holds two numbers, split it with ``PhoneNumberMatcher``."""
    digits = ("+" if chunk.startswith("+") else "") + re.sub(r"\D", "", chunk)
    if digits.startswith("00"):
        # An international call prefix the home region does not know (KE uses 000).
        digits = "+" + digits[2:]
    try:
        return [phonenumbers.parse(digits, region)]
    except phonenumbers.NumberParseException:
        pass
    spaced = re.sub(r"(?<![\d+])00(?=[1-9])", "+", chunk)
    return [match.number for match in phonenumbers.PhoneNumberMatcher(spaced, region)]


def _is_placeholder(number: phonenumbers.PhoneNumber) -> bool:
    """Numbers typed to fill a mandatory field: ``0700000000``, ``0711111111``, ``0123456789``."""
    national = str(number.national_number)
    if len(set(national[-7:])) == 1 or len(set(national[-6:])) == 1:
        return True
    return (
        ("0" + national) in _PLACEHOLDER_NATIONAL or national in _PLACEHOLDER_NATIONAL or national.startswith("1234567")
    )
