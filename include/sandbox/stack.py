"""The local CHT sandbox the demo and ``make airflow`` run on.

A real CouchDB-protocol server (pouchdb-server) holding a seeded synthetic CHT ``medic``
database, an *online* integration user (the kind of account CHT integrations must use), the demo
receiver, and the Airflow settings and Connections that point the pipelines at them.

Everything lives under ``.sandbox/`` (git-ignored) and survives between runs, so running the demo
twice continues from the first run's checkpoints. Passwords are generated on first use into
``.sandbox/credentials.json`` (mode 0600); they reach Airflow only as Connections.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import requests

from include.sandbox.couchdb import LocalCouch, create_user, set_security, write_private
from include.sandbox.receiver import Receiver
from include.sandbox.seed import seed

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / ".sandbox"
CHT_USER = "cht_bridge_integration"
CHT_ROLES = ["integration", "mm-online"]  # an online role: CHT refuses offline users here
RECEIVER_USER = "cht-bridge"


@dataclass
class Stack:
    """The running sandbox and how to reach it."""

    home: Path
    couch: LocalCouch
    receiver: Receiver
    credentials: dict[str, str]
    seeded: dict[str, int] = field(default_factory=dict)

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def state_db(self) -> Path:
        return self.airflow_home / "cht_bridge" / "state.db"

    def connections(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables: the only place the secrets go."""
        cht = {"conn_type": "http", "host": self.couch.url, "login": CHT_USER, "password": self.credentials["cht"]}
        receiver = {
            "conn_type": "http",
            "host": self.receiver.url,
            "login": RECEIVER_USER,
            "password": self.credentials["receiver"],
        }
        return {"AIRFLOW_CONN_CHT_LOCAL": json.dumps(cht), "AIRFLOW_CONN_DEMO_RECEIVER": json.dumps(receiver)}

    def environment(self) -> dict[str, str]:
        """Everything an Airflow process needs to run the example pipelines here."""
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            **self.connections(),
        }

    def stop(self) -> None:
        self.receiver.stop()
        self.couch.stop()


def _credentials(home: Path) -> dict[str, str]:
    path = home / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"cht": secrets.token_urlsafe(18), "receiver": secrets.token_urlsafe(18)}
    write_private(path, json.dumps(creds))
    return creds


def start(home: Path = HOME, docs: int = 5000, data_seed: int = 42) -> Stack:
    """Start (or resume) the sandbox; seed the ``medic`` database the first time."""
    home.mkdir(parents=True, exist_ok=True)
    creds = _credentials(home)
    couch = LocalCouch(home / "couch", in_memory=False).start()
    seeded: dict[str, int] = {}
    try:
        existing = requests.get(f"{couch.url}/medic", auth=couch.admin_auth, timeout=30)
        if existing.status_code == 404 or existing.json().get("doc_count", 0) == 0:
            seeded = seed(couch.url, couch.admin_auth, docs, seed=data_seed)
        create_user(couch.url, couch.admin_auth, CHT_USER, creds["cht"], CHT_ROLES)
        set_security(couch.url, couch.admin_auth, "medic", member_roles=["mm-online"])
        receiver = Receiver(
            home / "receiver", credentials={"username": RECEIVER_USER, "password": creds["receiver"]}
        ).start()
    except BaseException:
        couch.stop()
        raise
    return Stack(home=home, couch=couch, receiver=receiver, credentials=creds, seeded=seeded)
