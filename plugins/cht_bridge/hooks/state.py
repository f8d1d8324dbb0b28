"""Open the state store: an Airflow Connection's database, or a SQLite file in AIRFLOW_HOME.

The store lives outside Airflow's metadata database on purpose: Airflow 3 tasks may not touch
that database, and the ledger must outlive Airflow upgrades and resets.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import BaseHook

from cht_bridge.state.store import StateStore


def bridge_home() -> Path:
    """``$AIRFLOW_HOME/cht_bridge``: the default state store and the dry-run files live here."""
    folder = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "cht_bridge"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_state_url() -> str:
    return f"sqlite:///{bridge_home() / 'state.db'}"


#: Names the state store's Connection for every pipeline that does not name one itself, so a
#: deployment with workers on several machines points them all at one database.
STATE_CONN_ENV = "CHT_BRIDGE_STATE_CONN_ID"


def sqlalchemy_url(uri: str) -> str:
    """An Airflow Connection URI as SQLAlchemy wants it (``postgres://`` → psycopg 3 driver)."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return uri


def open_state_store(conn_id: str | None) -> StateStore:
    """The store named by ``conn_id``, or by ``$CHT_BRIDGE_STATE_CONN_ID``, else the default file."""
    conn_id = conn_id or os.environ.get(STATE_CONN_ENV)
    if not conn_id:
        return StateStore(default_state_url())
    return StateStore(sqlalchemy_url(BaseHook.get_connection(conn_id).get_uri()))
