"""Run a real local pouchdb-server as a CouchDB stand-in for tests and the demo.

No CouchDB can be installed on the build machine, so tests talk to ``pouchdb-server@4.2.0``
(pinned in ``package.json`` next to this file). Its gaps versus CouchDB 3 shape how it is started:

* admins come from a pre-seeded ``config.json`` in the working directory (otherwise the server
  runs in "admin party"), and the server also writes ``log.txt`` there, so each instance gets its
  own throwaway directory;
* some bad requests crash Node unless it runs with ``--unhandled-rejections=warn``;
* there is no ``/_up``: readiness is ``GET /`` answering 200.

Usage::

    with LocalCouch(tmp_path) as couch:
        requests.get(couch.url + "/_all_dbs", auth=couch.admin_auth)

CLI (foreground server for the demo; writes ``<dir>/admin.json``)::

    python -m standins.couchdb --dir .sandbox/couch [--port 5984] [--persist]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import requests

STANDINS_DIR = Path(__file__).resolve().parent
BIN = STANDINS_DIR / "node_modules" / ".bin" / "pouchdb-server"
ADMIN_USER = "admin"
START_TIMEOUT_S = 30.0
HTTP_TIMEOUT = (5, 60)


def ensure_installed() -> Path:
    """Install the pinned pouchdb-server (``npm ci``) if missing; return the binary path.

    ``--ignore-scripts`` is enough: LevelDB ships an N-API prebuild and sqlite mode is not used.
    """
    if not BIN.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm not found on PATH; Node 20 + npm are needed for the sandbox")
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=STANDINS_DIR,
            check=True,
        )
        if not BIN.exists():
            raise RuntimeError(f"npm ci finished but {BIN} is missing")
    return BIN


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1 (tiny race window, fine for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildServer:
    """What the child-process stand-ins share (pouchdb-server here, sekmet in ``fhir_server``): a
    server run from ``workdir`` on a loopback port with its output appended to ``log_path``, a
    start-up wait that says why a start failed, stop, and a context manager.

    A subclass sets the class attributes and writes ``start()`` with :meth:`_prepare` and
    :meth:`_spawn`.
    """

    #: the server's name in error messages
    name = "server"
    #: ``url`` is ``http://127.0.0.1:<port>`` and this
    url_path = ""
    #: ``GET url + probe_path`` answers 200 once the server is ready
    probe_path = "/"
    start_timeout_s = START_TIMEOUT_S

    def __init__(self, workdir: Path, port: int | None, log_name: str) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.log_path = self.workdir / log_name
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return f"http://127.0.0.1:{self.port}{self.url_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        raise NotImplementedError

    def serve_until_signalled(self) -> None:
        """The CLIs' foreground mode: block until SIGTERM/SIGINT or the server exits, then stop it."""
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set() and self.running:
            stop.wait(1.0)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for an error message."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _prepare(self) -> None:
        """Make ``workdir`` and pick a free port unless one was given."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()

    def _spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``cmd`` in ``workdir`` (stopped at exit) and wait until it is ready."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        atexit.register(self.stop)
        self._wait_ready(self._proc)

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until ``url + probe_path`` answers 200; a child that exits, or a timeout (after
        ``stop()``), raises with the log's tail, so a failed start says why."""
        probe_url = self.url + self.probe_path
        deadline = time.monotonic() + self.start_timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                r = requests.get(probe_url, timeout=2)
                if r.status_code == 200:
                    return
                last_error = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last_error = type(e).__name__
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready on {probe_url} after {self.start_timeout_s:.0f} s ({last_error}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )


class LocalCouch(ChildServer):
    """A pouchdb-server child process with a random admin password, in its own working dir.

    ``in_memory=True`` (default) loses data on stop/restart; ``in_memory=False`` keeps LevelDB
    files under ``<workdir>/data`` so :meth:`restart` comes back with the same data (crash tests).
    """

    name = "pouchdb-server"

    def __init__(self, workdir: Path, port: int | None = None, in_memory: bool = True) -> None:
        super().__init__(workdir, port, "pouchdb-server.log")
        self.in_memory = in_memory
        self._password: str | None = None

    # -- public properties -------------------------------------------------------------------
    @property
    def admin_auth(self) -> tuple[str, str]:
        if self._password is None:
            raise RuntimeError("LocalCouch not started")
        return (ADMIN_USER, self._password)

    @property
    def pid(self) -> int:
        """The server's process id (for CPU and memory measurements)."""
        if self._proc is None:
            raise RuntimeError("LocalCouch not started")
        return self._proc.pid

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the server and block until ``GET /`` answers 200."""
        if self.running:
            return self
        binary = ensure_installed()
        self._prepare()
        if self._password is None:
            # First start: seed the admin. The server replaces the plaintext by a pbkdf2 hash,
            # and keeps it across restarts, so restart() must not rewrite this file.
            self._password = secrets.token_urlsafe(24)
            config = {"admins": {ADMIN_USER: self._password}}
            write_private(self.workdir / "config.json", json.dumps(config, indent=2))
        cmd = [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "-n"]
        if self.in_memory:
            cmd.append("--in-memory")
        else:
            data_dir = self.workdir / "data"
            data_dir.mkdir(exist_ok=True)
            cmd += ["--dir", str(data_dir)]
        env = dict(os.environ)
        env["NODE_OPTIONS"] = (env.get("NODE_OPTIONS", "") + " --unhandled-rejections=warn").strip()
        self._spawn(cmd, env)
        return self

    def kill(self) -> None:
        """SIGKILL the server without a clean shutdown (to simulate a crash)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def restart(self) -> Self:
        """Stop and start again on the same port with the same admin (and data unless in-memory)."""
        self.stop()
        return self.start()


def create_user(url: str, admin_auth: tuple[str, str], name: str, password: str, roles: list[str]) -> None:
    """Create (or overwrite) a CouchDB user ``org.couchdb.user:<name>`` in ``_users``.

    Used to give the integration a non-admin account, as in a real CHT deployment.
    """
    doc_url = f"{url}/_users/org.couchdb.user:{name}"
    doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": list(roles), "password": password}
    existing = requests.get(doc_url, auth=admin_auth, timeout=HTTP_TIMEOUT)
    if existing.status_code == 200:
        doc["_rev"] = existing.json()["_rev"]
    r = requests.put(doc_url, json=doc, auth=admin_auth, timeout=HTTP_TIMEOUT)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"creating user {name!r} failed: HTTP {r.status_code} {r.text[:200]}")


def set_security(
    url: str,
    admin_auth: tuple[str, str],
    db: str,
    member_roles: list[str] | None = None,
    member_names: list[str] | None = None,
) -> None:
    """Restrict ``db`` to members (pouchdb-server leaves dbs without ``_security`` open to all).

    Tests of "401 without credentials" need this first.
    """
    body = {
        "admins": {"names": [], "roles": []},
        "members": {"names": list(member_names or []), "roles": list(member_roles or [])},
    }
    r = requests.put(f"{url}/{db}/_security", json=body, auth=admin_auth, timeout=HTTP_TIMEOUT)
    if r.status_code != 200:
        raise RuntimeError(f"setting _security on {db!r} failed: HTTP {r.status_code} {r.text[:200]}")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only (it holds a plaintext password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local pouchdb-server for the demo.")
    parser.add_argument("--dir", required=True, type=Path, help="throwaway working directory")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--persist", action="store_true", help="LevelDB under <dir>/data")
    args = parser.parse_args(argv)

    couch = LocalCouch(args.dir, port=args.port, in_memory=not args.persist)
    couch.start()
    user, password = couch.admin_auth
    write_private(
        args.dir / "admin.json",
        json.dumps({"url": couch.url, "username": user, "password": password}, indent=2),
    )
    print(f"pouchdb-server ready at {couch.url}; admin credentials in {args.dir / 'admin.json'}", flush=True)
    couch.serve_until_signalled()
    return 0


if __name__ == "__main__":
    sys.exit(main())
