"""Open a pipeline's destination (any ``destination.type``) from an Airflow Connection and its ``destination`` block.

The Airflow HTTP provider's hook prepares the session (extra headers, TLS options from the
Connection); the pipeline's ``auth`` says how the Connection's secrets are presented
(``cht_bridge.http.settings.AuthSetting``: none, basic, bearer, a named header with an optional
prefix, a login cookie, OAuth2 client credentials), always only to the Connection's own origin.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.http.hooks.http import HttpHook

from cht_bridge.destinations.registry import open_destination
from cht_bridge.hooks.connection import open_session


def open_destination_from_connection(destination: Any, *, file: str, delivery: Any = None) -> Any:
    """Open the destination a pipeline names (its ``type``'s kind), with the pipeline's ``delivery`` retry settings.

    :raises ConfigError: when the Connection lacks what the chosen auth needs.
    """
    prepared = HttpHook(method=destination.method, http_conn_id=destination.conn_id).get_conn()
    session, base_url = open_session(
        destination.conn_id,
        destination.auth,
        system="The destination",
        where=file,
        prefix="destination.",
        session=prepared,
    )
    return open_destination(session, base_url, destination, delivery)
