"""Build a reverse pipeline's source from its config and an Airflow Connection.

The Connection (type ``http``) holds the host with scheme and port, and the login and password
(HTTP Basic); with ``{"auth": "bearer"}`` in its extra, the password is sent as a bearer token.
Either goes only to the Connection's own origin (``cht_bridge.http.origin``). A CSV source needs no
Connection: its folder is named in the pipeline file.
"""

from __future__ import annotations

import requests
from airflow.sdk import BaseHook

from cht_bridge.http.origin import scoped_session
from cht_bridge.reverse.model import SourceConfig
from cht_bridge.reverse.sources.base import Source


def source_session(conn_id: str) -> tuple[requests.Session, str]:
    """A session with the Connection's credentials (for its origin only) and TLS setting, and its base URL."""
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    host = conn.host or ""
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and f":{conn.port}" not in host.split("://", 1)[1]:
        host = f"{host}:{conn.port}"
    base_url = host.rstrip("/")
    basic, headers = None, None
    if extra.get("auth") == "bearer":
        headers = {"Authorization": f"Bearer {conn.password}"}
    elif conn.login:
        basic = (conn.login, conn.password or "")
    session = scoped_session(base_url, basic=basic, headers=headers, verify=extra.get("verify", True))
    session.headers["Accept"] = "application/fhir+json, application/json"
    return session, base_url


def open_source(config: SourceConfig) -> Source:
    """The source a pipeline file describes, ready to page from a checkpoint."""
    if config.type == "csv":
        from cht_bridge.reverse.places import from_repo
        from cht_bridge.reverse.sources.csv_folder import CsvFolderSource

        return CsvFolderSource(from_repo(config.folder), config.pattern, config.id_field)
    session, base_url = source_session(config.conn_id)
    if config.type == "fhir":
        from cht_bridge.reverse.sources.fhir import FhirSearchSource

        return FhirSearchSource(
            session, base_url, config.resource, dict(config.params), page_size=config.page_size,
            timeout=config.timeout, conn_id=config.conn_id, max_pages=config.max_pages,
            clock_skew_minutes=config.clock_skew_minutes,
        )  # fmt: skip
    from cht_bridge.reverse.sources.rest import JsonRestSource

    return JsonRestSource(
        session, base_url, config.path, items=config.items, id_field=config.id_field,
        version_field=config.version_field, paging=dict(config.paging), params=dict(config.params),
        timeout=config.timeout, conn_id=config.conn_id, max_pages=config.max_pages,
    )  # fmt: skip
