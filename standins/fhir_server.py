"""Run a real local FHIR R4 server (``sekmet-fhir``) for the reverse-pipeline tests and the demo.

sekmet is a FastAPI + SQLite "micro HIS": real searches (``_lastUpdated``, ``_sort``, ``_count``,
next links), real transactions and basic auth, started as a child process. Its dependencies
(fhirpathpy needs ``python-dateutil~=2.8``) clash with Airflow's pins, so it lives in its own venv,
``<repo>/.sandbox/fhir-venv``, installed on first use from ``fhir-requirements.txt`` next to this
file (about 15 s and 175 MB, once; a stamp file makes a changed requirements file reinstall).
Start-up takes under a second.

How it differs from the R4 servers it stands in for (what the FHIR source has to cope with):

* next links are ``<base>/<Type>?<used params>&_count=N&_offset=M`` re-queries, not a cached
  result list, so an update during paging shifts later pages;
* ``meta.lastUpdated`` has millisecond precision (``2026-11-26T17:34:58.123Z``) and
  ``meta.versionId`` counts "1", "2"… per resource;
* ``Prefer: handling=strict`` turns an unknown search parameter into a 400 (lenient mode adds a
  ``search.mode = outcome`` entry instead).

Usage::

    with LocalFhir(tmp_path) as fhir:
        requests.get(fhir.url + "/Patient", auth=fhir.credentials)

CLI (foreground server for the demo; writes ``<dir>/fhir.json`` with the URL and credentials)::

    python -m standins.fhir_server --dir .sandbox/fhir [--port 8091]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import requests

from standins.couchdb import ChildServer, write_private

STANDINS_DIR = Path(__file__).resolve().parent
REPO_DIR = STANDINS_DIR.parent
REQUIREMENTS = STANDINS_DIR / "fhir-requirements.txt"
#: ``CHT_BRIDGE_FHIR_VENV`` moves the venv out of the checkout (e.g. to a cache kept across clones).
VENV_DIR = Path(os.environ.get("CHT_BRIDGE_FHIR_VENV") or REPO_DIR / ".sandbox" / "fhir-venv")
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT = (5, 60)
FHIR_JSON = "application/fhir+json"


def ensure_installed(venv: Path = VENV_DIR) -> Path:
    """Create the venv and install the pinned sekmet if missing or outdated; return its ``sekmet``.

    A file lock keeps parallel test processes from installing into the same venv at once.
    """
    binary = venv / "bin" / "sekmet"
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".fhir-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
            return binary
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + ["-r", str(REQUIREMENTS)],
            check=True,
        )
        if not binary.exists():
            raise RuntimeError(f"pip install finished but {binary} is missing")
        stamp.write_text(wanted + "\n")
    return binary


class LocalFhir(ChildServer):
    """A sekmet FHIR server child process with basic auth, in its own working directory.

    Data lives in ``<workdir>/data`` (SQLite), so a restart keeps it. ``.url`` is the FHIR base,
    ``http://127.0.0.1:<port>/fhir``.
    """

    name = "sekmet"
    url_path = "/fhir"
    probe_path = "/metadata"
    start_timeout_s = START_TIMEOUT_S

    def __init__(self, workdir: Path, port: int | None = None, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(workdir, port, "sekmet.log")
        self.credentials = credentials or ("cht", secrets.token_urlsafe(18))
        self.startup_seconds: float | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the server and block until ``GET /fhir/metadata`` answers 200."""
        if self.running:
            return self
        binary = ensure_installed()
        self._prepare()
        self._write_settings()
        began = time.monotonic()
        self._spawn([str(binary), "serve", "-c", "settings.yaml"])
        self.startup_seconds = time.monotonic() - began
        return self

    def _write_settings(self) -> None:
        user, password = self.credentials
        settings = {
            "base_url": self.url,
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": "data",
            "simulator": {"enabled": False},  # no simulated hospital writing resources of its own
            "server_auth": {"types": ["basic"], "users": {user: password}},
            "log_inbound": False,  # the traffic log would keep every request body (patient data)
        }
        # JSON is YAML; the file holds the password, so only the owner may read it.
        write_private(self.workdir / "settings.yaml", json.dumps(settings, indent=2))

    # -- data ------------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """A session with the server's credentials and FHIR JSON headers."""
        session = requests.Session()
        session.auth = self.credentials
        session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
        return session

    def transaction(self, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store ``resources`` in one transaction, as ``PUT <Type>/<id>`` (client ids, upsert).

        Returns the ``entry.response`` of each, in order. All or nothing: a 4xx/5xx raises.
        """
        entries = [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        with self.session() as session:
            r = session.post(self.url, json=bundle, timeout=HTTP_TIMEOUT)
        if r.status_code != 200:
            raise RuntimeError(f"transaction of {len(entries)} resources failed: HTTP {r.status_code} {r.text[:300]}")
        return [entry.get("response", {}) for entry in r.json().get("entry", [])]

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``PUT <Type>/<id>`` one resource (create or update); returns the stored resource."""
        with self.session() as session:
            r = session.put(
                f"{self.url}/{resource['resourceType']}/{resource['id']}", json=resource, timeout=HTTP_TIMEOUT
            )
        if r.status_code not in (200, 201):
            raise RuntimeError(f"PUT {resource['resourceType']} failed: HTTP {r.status_code} {r.text[:300]}")
        return r.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local sekmet FHIR R4 server for the demo.")
    parser.add_argument("--dir", required=True, type=Path, help="working directory (settings, SQLite data, log)")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args(argv)

    fhir = LocalFhir(args.dir, port=args.port)
    fhir.start()
    user, password = fhir.credentials
    write_private(args.dir / "fhir.json", json.dumps({"url": fhir.url, "username": user, "password": password}))
    print(f"sekmet FHIR server ready at {fhir.url}; credentials in {args.dir / 'fhir.json'}", flush=True)
    fhir.serve_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
