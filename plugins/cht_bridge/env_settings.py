"""Deployment settings read from environment variables, each refused the same way when it is wrong.

A wrong value is a ``SettingError`` naming the variable, so the task fails once, plainly, instead of
being retried with the same value (or the value being silently ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def positive_whole_number(variable: str, environ: Mapping[str, str] = os.environ, what: str = "") -> int | None:
    """The value of ``variable`` as a whole number of at least 1; None when it is unset or empty.

    ``what`` names the unit in the error ("pool slots").
    """
    value = environ.get(variable, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        from cht_bridge.errors import SettingError

        raise SettingError(variable, f"'{value}' is not a positive whole number{' of ' + what if what else ''}")
    return int(value)
