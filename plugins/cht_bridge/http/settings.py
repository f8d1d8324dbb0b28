"""How a Connection's secret is presented: the auth setting, read from a pipeline file or a
Connection's extras and checked in one place.

No I/O and no heavy imports: the DAG files read pipeline files (and so this) at parse time. The
secret itself is never part of a setting; it stays in the Connection (login, password).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

AUTH_TYPES = ("none", "basic", "bearer", "header", "cookie", "oauth2")


@dataclass(frozen=True)
class AuthSetting:
    """How requests to one Connection are authenticated; the secrets are the Connection's.

    ``basic``: login and password. ``bearer``: ``Authorization: Bearer <password>``. ``header``:
    ``<header>: <prefix><password>`` (``x-api-key``; DHIS2's ``Authorization`` with prefix
    ``ApiToken ``, RapidPro's with ``Token ``; CHT-style ``Authorization`` with the whole value).
    ``cookie``: one ``GET <login_path>`` with the login and password (HTTP Basic) returns the
    session cookie ``cookie`` (OpenMRS: ``/openmrs/ws/rest/v1/session``, ``JSESSIONID``), sent
    instead of the password from then on. ``oauth2``: client credentials, the login being the
    client id and the password the client secret, exchanged at ``token_url`` (absolute, or a path
    on the Connection's origin) for a bearer token, with ``scope`` if given.
    """

    type: str = "none"
    header: str | None = None
    prefix: str = ""
    login_path: str | None = None
    cookie: str = "JSESSIONID"
    token_url: str | None = None
    scope: str | None = None


#: Every key an auth block may hold (``type`` and the settings above).
AUTH_KEYS = frozenset(f.name for f in fields(AuthSetting))
#: What each type needs besides the Connection's secrets, and why, for the error message.
REQUIRED = {
    "header": ("header", "the header name, e.g. x-api-key"),
    "cookie": ("login_path", "the path of the login request, e.g. /openmrs/ws/rest/v1/session"),
    "oauth2": ("token_url", "the token endpoint, e.g. https://auth.example.org/oauth2/token"),
}


def read_auth(value: Mapping[str, Any]) -> tuple[AuthSetting, list[tuple[str, str]]]:
    """The setting ``value`` describes (``type`` and its keys), and its problems as ``(key, message)``.

    Unknown keys are the caller's to report: a pipeline's ``auth`` block refuses them, a
    Connection's extras hold other things too.
    """
    kind = str(value.get("type", "none")).lower()
    if kind not in AUTH_TYPES:
        return AuthSetting(), [("type", f"must be one of {', '.join(AUTH_TYPES)} (got '{value.get('type')}')")]
    problems: list[tuple[str, str]] = []
    settings: dict[str, Any] = {}
    for key in AUTH_KEYS - {"type"}:
        if value.get(key) in (None, ""):
            continue  # missing: a required one is named below
        if isinstance(value[key], str):
            settings[key] = value[key]
        else:
            problems.append((key, "must be a string"))
    needed = REQUIRED.get(kind)
    if needed and not settings.get(needed[0]):
        problems.append((needed[0], f"required for type {kind}: {needed[1]}"))
    if kind != "header":  # a header name given to another type was never used: keep the old model's shape
        settings.pop("header", None)
    return AuthSetting(type=kind, **settings), problems
