"""An Airflow Connection becomes a base URL and an authenticated session: the one place it is read.

The base URL is built as the Airflow HTTP provider builds it (``HttpHook``): the host as given
when it has a scheme, else ``<schema or http>://<host>``, then ``:<port>`` when the Connection has
one (and the host does not already end in it). The login and password are presented as an
``AuthSetting`` says (``cht_bridge.http.auth``): a destination's from its pipeline file's
``auth:`` block; the CHT's and a reverse source's from the Connection's extras (``{"auth":
"bearer"}``, ``{"auth": "cookie", "login_path": ...}``...), HTTP Basic when the extras name none
and the Connection has a login. A CHT Connection's ``compress`` extra says whether its CouchDB is
read with gzip (``extras_compress``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook
from requests.auth import AuthBase

from cht_bridge.errors import ConfigError
from cht_bridge.http.auth import CredentialError, build_auth
from cht_bridge.http.origin import ScopedSession
from cht_bridge.http.settings import AUTH_KEYS, AuthSetting, read_auth


def connection_url(conn: Any) -> str:
    """The Connection's base URL, as the HTTP provider computes it, without a trailing slash."""
    host = conn.host or ""
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"
    if conn.port:
        try:
            named = urlsplit(base).port
        except ValueError:
            named = None
        if named != int(conn.port):
            base = f"{base}:{conn.port}"
    return base.rstrip("/")


def extras_auth(conn: Any) -> AuthSetting:
    """The auth setting a Connection's extras name; Basic when they name none and there is a login.

    :raises ConfigError: naming the Connection and the extra at fault.
    """
    extra = conn.extra_dejson
    if "auth" not in extra:
        return AuthSetting("basic" if conn.login else "none")
    setting, problems = read_auth({"type": extra["auth"], **{k: extra[k] for k in AUTH_KEYS - {"type"} if k in extra}})
    if problems:
        raise ConfigError(
            f"connection '{conn.conn_id}'",
            [f"extra {'auth' if key == 'type' else key}: {message}" for key, message in problems],
        )
    return setting


def extras_compress(conn: Any) -> bool | None:
    """The ``compress`` extra of a CHT Connection: whether to ask its CouchDB for gzip; None when
    absent or null (``CouchClient`` then decides: not on the loopback). A loopback address may be a tunnel
    to a remote CHT (``kubectl port-forward``, ``ssh -L``), which only the Connection can tell.
    JSON ``true``/``false``, or the words ``true``/``false`` (a Connection given as a URI has
    string extras).

    :raises ConfigError: naming the Connection and the extra, for any other value.
    """
    value = conn.extra_dejson.get("compress")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"connection '{conn.conn_id}'", [f"extra compress: must be true or false, not {value!r}"])


def connection_auth(
    conn_id: str,
    setting: AuthSetting | None = None,
    *,
    system: str,
    where: str | None = None,
    prefix: str = "",
    conn: Any = None,
    **options: Any,
) -> tuple[AuthBase | None, str, bool | str]:
    """How to authenticate to ``conn_id`` as ``setting`` says (None: as its extras say), its base
    URL and its TLS ``verify`` extra.

    ``where`` names the setting's origin in errors (a pipeline file; by default the Connection)
    and ``prefix`` its keys (``destination.``); ``conn``: the Connection when the caller has read it
    already (it is read once); ``options`` go to ``build_auth`` (timeouts, limits).

    :raises ConfigError: the Connection lacks what the setting needs.
    """
    if conn is None:
        conn = BaseHook.get_connection(conn_id)
    base_url = connection_url(conn)
    verify = conn.extra_dejson.get("verify", True)
    if setting is None:
        setting = extras_auth(conn)
    try:
        auth = build_auth(
            base_url, setting, conn.login, conn.password, conn_id=conn_id, system=system, verify=verify, **options
        )
    except CredentialError as exc:
        raise ConfigError(where or f"connection '{conn_id}'", [f"{prefix}{exc.key}: {exc}"]) from None
    return auth, base_url, verify


def open_session(
    conn_id: str, setting: AuthSetting | None = None, *, session: requests.Session | None = None, **how: Any
) -> tuple[requests.Session, str]:
    """``session`` (by default a new ``ScopedSession`` with the Connection's ``verify``) with
    ``connection_auth``'s auth, and the Connection's base URL. ``how``: ``connection_auth``'s options."""
    auth, base_url, verify = connection_auth(conn_id, setting, **how)
    if session is None:
        session = ScopedSession()
        session.verify = verify
    session.auth = auth
    return session, base_url


def airflow_api_session(conn_id: str, *, login_path: str = "auth/token") -> tuple[requests.Session, str]:
    """A session to Airflow's own api-server and its base URL, from the Connection ``conn_id``: host
    (``http://airflow-apiserver:8080``, or under a proxy's path), login and password of an auth-manager
    user; the session logs in at ``login_path`` under that base (``build_auth``'s ``jwt``) and sends the
    token to that origin only.

    :raises UnusableConnection: the Connection is not set, or lacks a login, a password or an http(s) host.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    from cht_bridge.errors import UnusableConnection
    from cht_bridge.http.origin import origin

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise UnusableConnection(
            conn_id,
            "is not set: it names Airflow's api-server (host) and a user of its auth manager that may create "
            "pools (login, password; role op or admin)",
        ) from None
    if origin(connection_url(conn)) is None or not conn.login or not conn.password:
        raise UnusableConnection(conn_id, "needs an http(s) host, a login and a password (a user of the auth manager)")
    return open_session(conn_id, AuthSetting("jwt", login_path=login_path), system="Airflow's api-server")
