"""Turn the ``outbound`` section of a CHT ``app_settings.json`` into pipeline definitions.

An existing CHT outbound config then runs unchanged: ``relevant_to`` and ``mapping`` are copied
verbatim, ``cron`` becomes the schedule, and ``destination.base_url`` plus the CHT credential
key become an Airflow Connection (the secret is entered there, never written to a file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from cht_bridge.errors import ConfigError

#: CHT Sentinel retries queued pushes every 5 minutes; a push without ``cron`` runs this often.
DEFAULT_SCHEDULE = "*/5 * * * *"


@dataclass(frozen=True)
class ImportedPush:
    """One CHT outbound push as a pipeline-file mapping plus the Connection it needs (no secret)."""

    push: str
    pipeline: dict[str, Any]
    connection: dict[str, Any]


def slug(text: str) -> str:
    """Make a DAG- and connection-id-safe name from a CHT push name or key."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower() or "push"


def pipelines_from_app_settings(
    settings: dict[str, Any],
    *,
    source: str,
    cht_conn_id: str = "cht_default",
    start_date: date | None = None,
) -> list[ImportedPush]:
    """One ``ImportedPush`` per ``outbound`` push, in the order of the settings.

    ``pipeline`` is ready for ``yaml.safe_dump`` or ``parse_pipeline``; ``connection`` names the
    host, login and the CHT credential key whose secret belongs in the Connection's password.

    :raises ConfigError: naming ``outbound.<push>.<key>`` for every push CHT itself would reject.
    """
    outbound = settings.get("outbound") if isinstance(settings, dict) else None
    if not isinstance(outbound, dict) or not outbound:
        raise ConfigError(source, ["outbound: no outbound pushes found in this app_settings"])
    problems: list[str] = []
    out = []
    for push, conf in outbound.items():
        key = f"outbound.{push}"
        if not isinstance(conf, dict):
            problems.append(f"{key}: must be an object")
            continue
        dest = conf.get("destination") or {}
        if not conf.get("relevant_to"):
            problems.append(f"{key}.relevant_to: required (without it CHT never pushes this config)")
        if not isinstance(conf.get("mapping"), dict):
            problems.append(f"{key}.mapping: required")
        base_url = dest.get("base_url") if isinstance(dest, dict) else None
        if not base_url or not urlsplit(str(base_url)).scheme:
            problems.append(f"{key}.destination.base_url: required, e.g. https://host")
            continue
        auth, conn_login, secret_key = _auth(dest.get("auth"), f"{key}.destination.auth", problems)
        conn_id = f"outbound_{slug(push)}"
        pipeline = {
            "name": slug(push),
            "description": f"Imported from CHT outbound push '{push}'",
            "schedule": conf.get("cron") or DEFAULT_SCHEDULE,
            "start_date": (start_date or date.today()).isoformat(),
            "cht": {"conn_id": cht_conn_id},
            "relevant_to": conf.get("relevant_to"),
            "mapping": conf.get("mapping"),
            "destination": {
                "conn_id": conn_id,
                "path": "/" + str(dest.get("path") or "").lstrip("/"),
                "method": "POST",
                "auth": auth,
                "mode": "single",
            },
            "tags": ["cht-outbound"],
        }
        connection = {
            "conn_id": conn_id,
            "conn_type": "http",
            "host": str(base_url).rstrip("/"),
            "login": conn_login,
            "password_from_cht_credential": secret_key,
        }
        out.append(ImportedPush(push, pipeline, connection))
    if problems:
        raise ConfigError(source, problems)
    return out


def _auth(auth: Any, key: str, problems: list[str]) -> tuple[dict[str, Any], str | None, str | None]:
    if not auth:
        return {"type": "none"}, None, None
    kind = str(auth.get("type", "")).lower() if isinstance(auth, dict) else ""
    if kind == "basic":
        return {"type": "basic"}, auth.get("username"), auth.get("password_key")
    if kind == "header":
        if str(auth.get("name", "")).lower() != "authorization":
            problems.append(f"{key}.name: CHT only supports the Authorization header")
        # CHT stores the whole header value (e.g. "Token abc") under value_key.
        return {"type": "header", "header": "Authorization"}, None, auth.get("value_key")
    if kind == "muso-sih":
        problems.append(f"{key}.type: muso-sih login is not supported; use basic or header auth")
    else:
        problems.append(
            f"{key}.type: must be basic or header (got '{auth.get('type') if isinstance(auth, dict) else auth}')"
        )
    return {"type": "none"}, None, None
