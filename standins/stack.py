"""The local CHT sandbox the demo and ``make airflow`` run on.

A real CouchDB-protocol server (pouchdb-server) holding a seeded synthetic CHT ``medic``
database, the local CHT API in front of it (records, people, contacts-by-phone…), an *online*
integration user (the kind of account CHT integrations must use), the demo receiver, a local FHIR
R4 server holding the EMR's lost-to-follow-up list, and the Airflow settings and Connections that
point the pipelines at them.

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
from typing import Any

import requests

from standins import dhis2_demo, rapidpro_demo
from standins.cht_api import ChtApi
from standins.couchdb import LocalCouch, create_user, set_security, write_private
from standins.fhir_server import LocalFhir
from standins.fixed_docs import SETTINGS_DOC
from standins.openmrs import OpenMrs, start_distributions
from standins.openmrs import connections as openmrs_connections
from standins.receiver import Receiver
from standins.seed import seed

ROOT = Path(__file__).resolve().parents[1]
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
    cht_api: ChtApi
    fhir: LocalFhir
    seeded: dict[str, int] = field(default_factory=dict)
    ltfu_loaded: int = 0
    rapidpro: Any = None  # standins.rapidpro.RapidProStandIn (standins/rapidpro_demo.py seeds it)
    openmrs: dict[str, OpenMrs] = field(default_factory=dict)  # the OpenMRS FHIR2 stand-ins: kenyaemr, bahmni
    dhis2: Any = None  # the DHIS2 stand-in (standins/dhis2_demo.py)

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
        api = {**cht, "host": self.cht_api.url}
        login, password = self.fhir.credentials
        fhir = {"conn_type": "http", "host": self.fhir.url, "login": login, "password": password}
        return {
            "AIRFLOW_CONN_CHT_LOCAL": json.dumps(cht),
            "AIRFLOW_CONN_CHT_API_LOCAL": json.dumps(api),
            "AIRFLOW_CONN_EMR_FHIR": json.dumps(fhir),
            "AIRFLOW_CONN_DEMO_RECEIVER": json.dumps(receiver),
            **self._rapidpro_connection(),
            **openmrs_connections(self.openmrs),
            **(
                {dhis2_demo.CONN_ENV: dhis2_demo.connection(self.dhis2, self.credentials["dhis2"])}
                if self.dhis2
                else {}
            ),
        }

    def _rapidpro_connection(self) -> dict[str, str]:
        """RapidPro's API token as the password; the extras say how a reverse source presents it."""
        if self.rapidpro is None:
            return {}
        extra = {"auth": "header", "header": "Authorization", "prefix": "Token "}
        conn = {
            "conn_type": "http",
            "host": self.rapidpro.url,
            "password": self.credentials["rapidpro"],
            "extra": extra,
        }
        return {"AIRFLOW_CONN_RAPIDPRO_LOCAL": json.dumps(conn)}

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
        if self.rapidpro is not None:
            self.rapidpro.stop()
        for server in self.openmrs.values():
            server.stop()
        if self.dhis2 is not None:
            self.dhis2.stop()
        self.fhir.stop()
        self.cht_api.stop()
        self.receiver.stop()
        self.couch.stop()


def _credentials(home: Path) -> dict[str, str]:
    path = home / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"cht": secrets.token_urlsafe(18), "receiver": secrets.token_urlsafe(18)}
    write_private(path, json.dumps(creds))
    return creds


def _ensure_app_settings(couch: LocalCouch) -> None:
    """Add what the CHT API needs (forms, roles, permissions, contact types) to an older sandbox."""
    url = f"{couch.url}/medic/settings"
    doc = requests.get(url, auth=couch.admin_auth, timeout=30).json()
    missing = {k: v for k, v in SETTINGS_DOC["settings"].items() if k not in doc.get("settings", {})}
    if missing:
        doc.setdefault("settings", {}).update(missing)
        requests.put(url, json=doc, auth=couch.admin_auth, timeout=30).raise_for_status()


def _load_ltfu_list(fhir: LocalFhir, docs: int) -> int:
    """Put the EMR's lost-to-follow-up Patients on the FHIR server, once (a PUT of the same
    Patient again would make a new version, which the LTFU pipeline would read as a new entry)."""
    from standins.emr_lists import ltfu_patients

    answer = fhir.session().get(f"{fhir.url}/Patient", params={"_count": 1, "_total": "accurate"}, timeout=30)
    answer.raise_for_status()
    if answer.json().get("total", 0) or answer.json().get("entry"):
        return 0
    patients, _ = ltfu_patients(docs=docs)
    fhir.transaction(patients)
    return len(patients)


def start(home: Path = HOME, docs: int = 5000, data_seed: int = 42) -> Stack:
    """Start (or resume) the sandbox; seed the ``medic`` database the first time."""
    home.mkdir(parents=True, exist_ok=True)
    creds = _credentials(home)
    creds.setdefault("fhir", secrets.token_urlsafe(18))  # a sandbox from before the FHIR server
    creds.setdefault("rapidpro", secrets.token_urlsafe(18))  # RapidPro's API token
    creds.setdefault("openmrs", secrets.token_urlsafe(18))  # the OpenMRS stand-ins' admin password
    creds.setdefault("dhis2", secrets.token_urlsafe(18))  # a sandbox from before the DHIS2 stand-in
    write_private(home / "credentials.json", json.dumps(creds))
    couch = LocalCouch(home / "couch", in_memory=False).start()
    seeded: dict[str, int] = {}
    started: list = [couch]
    try:
        existing = requests.get(f"{couch.url}/medic", auth=couch.admin_auth, timeout=30)
        if existing.status_code == 404 or existing.json().get("doc_count", 0) == 0:
            seeded = seed(couch.url, couch.admin_auth, docs, seed=data_seed)
        _ensure_app_settings(couch)
        create_user(couch.url, couch.admin_auth, CHT_USER, creds["cht"], CHT_ROLES)
        set_security(couch.url, couch.admin_auth, "medic", member_roles=["mm-online"])
        receiver = Receiver(
            home / "receiver", credentials={"username": RECEIVER_USER, "password": creds["receiver"]}
        ).start()
        started.append(receiver)
        cht_api = ChtApi(couch.url, couch.admin_auth, db="medic").start()
        started.append(cht_api)
        fhir = LocalFhir(home / "fhir", credentials=("cht", creds["fhir"])).start()
        started.append(fhir)
        loaded = _load_ltfu_list(fhir, docs)
        rapidpro = rapidpro_demo.start(home, couch, creds["rapidpro"])
        started.append(rapidpro)
        openmrs = start_distributions(home / "openmrs", creds["openmrs"])
        started.extend(openmrs.values())
        dhis2 = dhis2_demo.start(home, creds["dhis2"])
        started.append(dhis2)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return Stack(
        home=home, couch=couch, receiver=receiver, credentials=creds, cht_api=cht_api, fhir=fhir, seeded=seeded,
        ltfu_loaded=loaded, rapidpro=rapidpro, openmrs=openmrs, dhis2=dhis2,
    )  # fmt: skip
