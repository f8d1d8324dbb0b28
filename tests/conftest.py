"""Test set-up shared by every suite: a private Airflow home, a real local CouchDB-protocol server
(pouchdb-server, started once per session), and a real demo receiver per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.fixtures.cht_api", "tests.fixtures.sources", "tests.fixtures.state"]


def pytest_configure(config: pytest.Config) -> None:
    # Before anything imports Airflow: its settings are read once, at import.
    home = Path(tempfile.mkdtemp(prefix="cht-bridge-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


#: Test folders whose tests start real servers (pouchdb-server, the stand-ins, PostgreSQL, Compose)
#: or run whole DAGs: each of their tests is marked ``integration`` (``pytest -m "not integration"``
#: runs the fast unit tests alone).
INTEGRATION_FOLDERS = ("integration", "standins", "compose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(item.path).relative_to(ROOT / "tests").parts
        if parts and parts[0] in INTEGRATION_FOLDERS:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database, which ``dag.test()`` needs."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture(scope="session")
def couch(tmp_path_factory: pytest.TempPathFactory):
    from standins.couchdb import LocalCouch

    server = LocalCouch(tmp_path_factory.mktemp("couch")).start()
    yield server
    server.stop()


@pytest.fixture
def cht(couch):
    """A fresh CHT-like database on the shared server, and an online integration user for it."""
    from standins.couchdb import create_user, set_security

    db = f"medic_{uuid.uuid4().hex[:10]}"
    requests.put(f"{couch.url}/{db}", auth=couch.admin_auth, timeout=30).raise_for_status()
    user, password = f"integration_{db}", uuid.uuid4().hex
    create_user(couch.url, couch.admin_auth, user, password, ["mm-online"])
    set_security(couch.url, couch.admin_auth, db, member_names=[user])
    return ChtDb(couch.url, db, couch.admin_auth, (user, password))


class ChtDb:
    """One test database: admin access for arranging data, user credentials for the pipeline."""

    def __init__(self, url: str, db: str, admin: tuple[str, str], user: tuple[str, str]) -> None:
        self.url, self.db, self.admin, self.user = url, db, admin, user
        self.db_url = f"{url}/{db}"

    def seed(self, n_docs: int, seed: int = 7) -> dict:
        from standins.seed import seed as load

        return load(self.url, self.admin, n_docs, seed=seed, db=self.db)

    def put(self, *docs: dict) -> list[dict]:
        r = requests.post(f"{self.db_url}/_bulk_docs", json={"docs": list(docs)}, auth=self.admin, timeout=30)
        r.raise_for_status()
        return r.json()

    def get(self, doc_id: str) -> dict:
        r = requests.get(f"{self.db_url}/{doc_id}", auth=self.admin, timeout=30)
        r.raise_for_status()
        return r.json()

    def all_docs(self) -> list[dict]:
        r = requests.get(f"{self.db_url}/_all_docs", params={"include_docs": "true"}, auth=self.admin, timeout=60)
        r.raise_for_status()
        return [row["doc"] for row in r.json()["rows"] if not row["id"].startswith("_design/")]

    def last_seq(self, since=0, limit: int | None = None):
        params = {"since": since} if limit is None else {"since": since, "limit": limit}
        r = requests.get(f"{self.db_url}/_changes", params=params, auth=self.admin, timeout=60)
        r.raise_for_status()
        return r.json()["last_seq"]

    def connection(self, password: str | None = None) -> str:
        login, secret = self.user
        return json.dumps({"conn_type": "http", "host": self.url, "login": login, "password": password or secret})


@pytest.fixture
def receiver(tmp_path):
    from standins.receiver import Receiver

    creds = {"username": "bridge", "password": uuid.uuid4().hex}
    server = Receiver(tmp_path / "receiver", credentials=creds).start()
    server.credentials = creds
    yield server
    server.stop()


def receiver_connection(server) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": server.url,
            "login": server.credentials["username"],
            "password": server.credentials["password"],
        }
    )


def received(server) -> list[dict]:
    path = server.received_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this session (``.ci/run`` installs it with apt-get)."""
    bindir = _postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing; .ci/run installs the postgresql package")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    data = Path(tempfile.mkdtemp(prefix="cht-bridge-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    from standins.couchdb import free_port

    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bridge"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    yield f"postgresql://bridge@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(data, ignore_errors=True)
