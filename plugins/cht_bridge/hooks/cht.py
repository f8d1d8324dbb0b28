"""Airflow hook for a CHT instance (or a bare CouchDB holding a ``medic`` database).

The Connection is an ``http`` connection: host (with scheme and port, e.g.
``https://cht.example.org``), login and password of an *online* CHT user (HTTP Basic, unless its
extras name another auth: ``cht_bridge.hooks.connection``), and the extra ``compress`` (true/false)
when a loopback host is a tunnel to a remote CHT, or a remote host is this machine. Nothing else
is configured anywhere: the password never appears in a pipeline file.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.http.hooks.http import HttpHook
from airflow.sdk import BaseHook

from cht_bridge.cht.api import ChtApiClient
from cht_bridge.cht.couch import CouchClient
from cht_bridge.hooks.connection import connection_auth, extras_compress


class ChtHook(HttpHook):
    """Build a ``CouchClient`` from an Airflow Connection."""

    conn_name_attr = "cht_conn_id"
    default_conn_name = "cht_default"
    conn_type = "http"
    hook_name = "CHT (Community Health Toolkit)"

    def __init__(self, cht_conn_id: str = default_conn_name) -> None:
        super().__init__(method="GET", http_conn_id=cht_conn_id)

    def get_client(self, db: str = "medic", client: type[CouchClient] = CouchClient, **options: Any) -> CouchClient:
        """A client for ``db`` with the Connection's URL, credentials, TLS and ``compress`` settings."""
        conn = BaseHook.get_connection(self.http_conn_id)
        compress = extras_compress(conn)
        auth, base_url, verify = connection_auth(self.http_conn_id, system="CHT", conn=conn)
        return client(base_url, db, auth, conn_id=self.http_conn_id, verify=verify, compress=compress, **options)

    def get_api_client(self, timeout: float = 30.0) -> ChtApiClient:
        """A client for the CHT API (people, records, contacts-by-phone) and the ``medic`` reads."""
        return self.get_client("medic", ChtApiClient, timeout=(min(10.0, timeout), timeout))
