"""Build a REST destination from an Airflow Connection and a pipeline's ``destination`` block.

The Airflow HTTP provider's hook prepares the session (URL, extra headers, TLS options from
the Connection); the pipeline's ``auth`` says how the Connection's password is presented:
``basic`` (login + password), ``bearer`` (``Authorization: Bearer <password>``), ``header``
(``<name>: <password>``, e.g. ``x-api-key``, or CHT's ``Authorization`` with the whole value),
or ``none``. The secret is an ``OriginAuth`` (``cht_bridge.origin``): added to each request to the
Connection's own origin, never set on the session for every URL.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.http.hooks.http import HttpHook

from cht_bridge.destinations.registry import open_destination
from cht_bridge.errors import ConfigError
from cht_bridge.origin import OriginAuth, origin


def rest_destination(destination: Any, *, source: str, delivery: Any = None) -> Any:
    """Open the destination a pipeline names (its ``type``'s kind), with the pipeline's ``delivery`` retry settings.

    :raises ConfigError: when the Connection lacks what the chosen auth needs.
    """
    hook = HttpHook(method=destination.method, http_conn_id=destination.conn_id)
    session = hook.get_conn()
    conn = hook.get_connection(destination.conn_id)
    auth = destination.auth
    session.auth = None
    if auth.type != "none" and origin(hook.base_url) is None:
        raise ConfigError(
            source, [f"destination.conn_id: connection '{conn.conn_id}' needs an http(s) host for its credentials"]
        )
    if auth.type == "basic":
        if not conn.login:
            raise ConfigError(source, [f"destination.auth: basic needs a login on connection '{conn.conn_id}'"])
        session.auth = OriginAuth(hook.base_url, basic=(conn.login, conn.password or ""))
    elif auth.type in ("bearer", "header"):
        if not conn.password:
            raise ConfigError(
                source,
                [f"destination.auth: {auth.type} needs the secret as the password of connection '{conn.conn_id}'"],
            )
        name, value = (
            ("Authorization", f"Bearer {conn.password}") if auth.type == "bearer" else (auth.header, conn.password)
        )
        session.auth = OriginAuth(hook.base_url, headers={name: value})
    return open_destination(session, hook.base_url, destination, delivery)
