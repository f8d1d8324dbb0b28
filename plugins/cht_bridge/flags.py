"""Yes/no flags as sources write them: one reading for the forward and the reverse pipelines.

A CHT document, a CSV column and an EMR's JSON write the same flag as ``true``, ``"yes"``, ``1``, a
spreadsheet's ``1.0`` or, for an estimated date of birth, CHT's ``date_of_birth_method: approx``.
The FHIR builder (a boolean observation, ``birth_date_estimated``) and the matcher (an estimated
date of birth) read them here, so a CHT flag means the same going out and coming back. Pure
Python: DAG files import what imports this.
"""

from __future__ import annotations

import re
from typing import Any

#: Values read as yes: booleans as files write them, and CHT's ``approx`` (the person form's
#: ``date_of_birth_method`` when an age was entered) with its synonyms.
TRUE = frozenset({"true", "yes", "1", "approx", "approximate", "estimated"})
#: Values read as no. Anything else is unknown: no in the lenient reading, ``None`` in the strict one.
FALSE = frozenset({"false", "no", "0", ""})
#: A date written only to the year or the month (FHIR's ``1990`` / ``1990-04``): an estimate by its
#: precision (OpenMRS FHIR2 writes ``birthdateEstimated`` that way and reads it back so).
PARTIAL_DATE = re.compile(r"(18|19|20)\d\d(-(0[1-9]|1[0-2]))?")


def flag(value: Any, *, strict: bool = False) -> bool | None:
    """Read a yes/no flag (case and spaces ignored; ``1.0`` and ``"1.0"``, a spreadsheet's, as ``1``).

    :param strict: an unknown value (``"maybe"``, ``2``, a list) is ``None``, for a caller that
        fails the value; lenient (the default) reads it, and ``None``, as no: a wrong flag never
        throws a real value away.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value == value and value.is_integer():
        value = int(value)
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text is not None and text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    if text in TRUE:
        return True
    if text in FALSE or (not strict and value is None):
        return False
    return None if strict else False
