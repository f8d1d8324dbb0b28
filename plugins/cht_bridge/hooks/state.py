"""Open the state store: an Airflow Connection's database, or a SQLite file in AIRFLOW_HOME.

The store lives outside Airflow's metadata database on purpose: Airflow 3 tasks may not touch
that database, and the ledger must outlive Airflow upgrades and resets.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import BaseHook

from cht_bridge.state.store import StateStore


def default_state_url() -> str:
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
    folder = home / "cht_bridge"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'state.db'}"


def open_state_store(conn_id: str | None) -> StateStore:
    """The store named by ``conn_id`` (a postgres or sqlite Connection), else the default file."""
    if not conn_id:
        return StateStore(default_state_url())
    uri = BaseHook.get_connection(conn_id).get_uri()
    if uri.startswith("postgres://"):
        uri = "postgresql://" + uri[len("postgres://") :]
    return StateStore(uri)
