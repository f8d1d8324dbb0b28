"""``make cluster``: docker-compose.yaml's CeleryExecutor deployment, started natively on one machine.

No Docker: PostgreSQL (Airflow's metadata database ``airflow`` and the CHT Bridge state store
``cht_bridge``) and Redis (the Celery broker) from the distribution's packages, then Airflow's
api-server, scheduler, dag-processor, triggerer and two Celery workers, wired to the sandbox CHT,
receiver, CHT API and FHIR server of ``standins/stack.py`` (hosted by a process of their own).

The settings the compose file and this share are read from ``include/cluster.env`` (the one
source); what is particular to one machine (URLs, ports, folders, generated secrets) is set here.

Everything lives under ``.sandbox/cluster/``: ``pg/`` (the database, owned by the ``postgres``
user when run as root: PostgreSQL refuses to run as root), ``airflow/`` (AIRFLOW_HOME),
``pipelines/`` (the pipeline folder the DAGs read, first filled from ``include/pipelines``),
``logs/<component>.log``, ``run/<component>.pid`` and ``secrets.json`` (0600; passwords and keys).
Each process is started in a session of its own; ``stop`` sends SIGTERM to each whole process
group named by a pid file (SIGKILL after a grace period) and stops PostgreSQL with ``pg_ctl``.

CLI::

    python -m standins.cluster start [--docs 5000]    # returns once every component is up
    python -m standins.cluster status
    python -m standins.cluster stop
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("CLUSTER_HOME", ROOT / ".sandbox" / "cluster"))
SHARED_ENV = ROOT / "include" / "cluster.env"
VENV_BIN = Path(sys.executable).parent
ADMIN = "admin"
#: The user the ``cht_bridge_pools`` DAG creates pools as (role op: pools, not everything), through the
#: Connection ``cht_bridge_airflow_api``.
POOLS_USER = "cht_bridge_pools"
#: Ports apart from the defaults (8080, 5432, 6379, 8793…) so the cluster runs next to `make airflow`.
PORTS = {
    "postgres": int(os.environ.get("CLUSTER_PG_PORT", 5437)),
    "redis": int(os.environ.get("CLUSTER_REDIS_PORT", 6397)),
    "api": int(os.environ.get("CLUSTER_API_PORT", 8095)),
    "worker1_logs": 8796,
    "worker2_logs": 8797,
    "triggerer_logs": 8798,
    "scheduler_health": 8799,
}
WORKERS = ("worker1", "worker2")
START_TIMEOUT_S = 240.0


def read_env_file(path: Path = SHARED_ENV) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, blank lines); the format docker compose's ``env_file`` reads."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{path}:{number}: not KEY=value")
        values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class Paths:
    home: Path = HOME

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def pg(self) -> Path:
        return self.home / "pg"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def pipelines(self) -> Path:
        return self.home / "pipelines"

    @property
    def sandbox_env(self) -> Path:
        return self.run / "sandbox.json"

    @property
    def receiver_settings(self) -> Path:
        return self.run / "receiver-settings.json"


def _private_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


#: Secrets the data already made depends on: the database was created with the PostgreSQL password, and
#: Airflow encrypted its Connections with the Fernet key. New ones would not open what exists.
BOUND_TO_DATA = ("postgres", "fernet")


def _new_secrets() -> dict[str, Callable[[], str]]:
    from cryptography.fernet import Fernet

    return {
        "postgres": lambda: secrets.token_hex(18),
        "fernet": lambda: Fernet.generate_key().decode(),
        "jwt": lambda: secrets.token_hex(24),
        "api_secret": lambda: secrets.token_hex(24),
        "admin": lambda: secrets.token_hex(12),
        "pools_user": lambda: secrets.token_hex(12),  # added to a cluster made before the pools DAG, too
    }


def cluster_secrets(paths: Paths = Paths()) -> dict[str, str]:
    """``secrets.json`` (0600): what compose reads from ``.env``. Each key is generated once: a key the file
    lacks is added, one it has is kept. A file that lost the PostgreSQL password or the Fernet key (emptied,
    truncated) while the database exists is refused, naming the way out, rather than silently given new
    ones that would lock the cluster out of its own database.

    :raises RuntimeError: ``BOUND_TO_DATA`` keys are missing and ``pg/`` holds a database.
    """
    path = paths.home / "secrets.json"
    values = json.loads(path.read_text() or "{}") if path.exists() else {}
    lost = [key for key in BOUND_TO_DATA if key not in values]
    if lost and (paths.pg / "PG_VERSION").exists():
        raise RuntimeError(
            f"{path} has no {', '.join(lost)} but the database in {paths.pg} was made with them: restore the "
            "file from a backup, or start anew with `make cluster-clean cluster` (the cluster's data is lost)"
        )
    missing = {key: new() for key, new in _new_secrets().items() if key not in values}
    if missing:
        values.update(missing)
        _private_json(path, values)
    return values


def pools_user_access(passwords_file: Path, api: str) -> dict[str, str]:
    """For a SimpleAuthManager whose users the environment does not set (``make airflow``): the admin and
    ``POOLS_USER`` (role op), a generated password for the latter added to the passwords file (0600; the
    admin's is left to Airflow to generate), and the Connection the ``cht_bridge_pools`` DAG logs in with."""
    passwords = json.loads(passwords_file.read_text() or "{}") if passwords_file.exists() else {}
    if POOLS_USER not in passwords:
        passwords[POOLS_USER] = secrets.token_hex(12)
        _private_json(passwords_file, passwords)
    conn = {"conn_type": "http", "host": api, "login": POOLS_USER, "password": passwords[POOLS_USER]}
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{POOLS_USER}:op",
        "AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API": json.dumps(conn),
    }


def api_url() -> str:
    return f"http://127.0.0.1:{PORTS['api']}"


def _pg_url(password: str, database: str, driver: str = "postgresql+psycopg") -> str:
    return f"{driver}://airflow:{password}@127.0.0.1:{PORTS['postgres']}/{database}"


def airflow_environment(paths: Paths = Paths()) -> dict[str, str]:
    """The environment of every Airflow process of the cluster (secrets included: never log it)."""
    s = cluster_secrets(paths)
    sandbox = json.loads(paths.sandbox_env.read_text())["environment"]
    state = {
        "conn_type": "postgres", "host": "127.0.0.1", "port": PORTS["postgres"], "schema": "cht_bridge",
        "login": "airflow", "password": s["postgres"],
    }  # fmt: skip
    return {
        **read_env_file(),
        **sandbox,
        "AIRFLOW_HOME": str(paths.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
        "CHT_BRIDGE_PIPELINES": str(paths.pipelines),
        # Relative CSV drop folders (include/lists/...) under the repository, as a URL: on this one
        # machine every worker reaches it (compose: the include volume; several machines: shared storage).
        "CHT_BRIDGE_CSV_ROOT": f"file://{ROOT}/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _pg_url(s["postgres"], "airflow"),
        # psycopg 3 for the api-server's async engine too (Airflow would pick asyncpg, not installed).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": _pg_url(s["postgres"], "airflow", "postgresql+psycopg_async"),
        "AIRFLOW__CELERY__RESULT_BACKEND": _pg_url(s["postgres"], "airflow", "db+postgresql+psycopg"),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{PORTS['redis']}/0",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url()}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": s["fernet"],
        "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt"],
        "AIRFLOW__API__SECRET_KEY": s["api_secret"],
        "AIRFLOW__API__PORT": str(PORTS["api"]),
        "AIRFLOW__API__BASE_URL": api_url(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{POOLS_USER}:op",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(PORTS["scheduler_health"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(PORTS["triggerer_logs"]),
        "AIRFLOW_CONN_CHT_BRIDGE_STATE": json.dumps(state),
        # The cht_bridge_pools DAG creates missing pools through the api-server as this user.
        "AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API": json.dumps(
            {"conn_type": "http", "host": api_url(), "login": POOLS_USER, "password": s["pools_user"]}
        ),
        # The sandbox's two receiver Connections get one send slot each: fewer than the tasks the CHT
        # pool lets run at once, so the scale test sees the destination limit itself hold.
        "CHT_BRIDGE_POOL_SLOTS__DEMO_RECEIVER": "1",
        "CHT_BRIDGE_POOL_SLOTS__SECOND_RECEIVER": "1",
        # make bench-cluster's receiver Connection (bench/cluster.py): wide, so workers bound the measure.
        "CHT_BRIDGE_POOL_SLOTS__BENCH_RECEIVER": "8",
    }


# --- processes -------------------------------------------------------------------------------


def _pid_file(paths: Paths, name: str) -> Path:
    return paths.run / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(paths: Paths, name: str) -> int | None:
    """The pid of component ``name`` if its pid file names a live process."""
    path = _pid_file(paths, name)
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def spawn(paths: Paths, name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` in a session (process group) of its own, output to ``logs/<name>.log``."""
    pid = running(paths, name)
    if pid:
        return pid
    paths.logs.mkdir(parents=True, exist_ok=True)
    with open(paths.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    _pid_file(paths, name).write_text(str(proc.pid))
    return proc.pid


def descendants(pid: int) -> list[Any]:
    """Every process below ``pid`` (Airflow runs each task in a session of its own, outside the group)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(paths: Paths, name: str) -> list[int]:
    """SIGKILL component ``name`` and every process below it at once: a worker machine lost."""
    pid = running(paths, name)
    if not pid:
        return []
    procs = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return [pid, *(p.pid for p in procs)]


def stop_group(paths: Paths, name: str, grace_s: float = 20.0) -> bool:
    """SIGTERM the process group of component ``name``; SIGKILL it, and any of its processes that
    left the group (task processes), after ``grace_s``."""
    path = _pid_file(paths, name)
    if not path.exists():
        return False
    pid = int(path.read_text().strip() or 0)
    below = descendants(pid)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(pid)  # a child of ours (a failed start) that exited stays a zombie, and killpg finds it
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.3)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for proc in below:
        with contextlib.suppress(Exception):
            if proc.is_running():
                proc.kill()
    path.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect exited children of this process (the group's leader when we started it): a zombie
    still counts as a member of its process group."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-pid, os.WNOHANG)[0]:  # its group's other members that are our children
            pass


def _wait(what: str, ready: Any, paths: Paths, log_name: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if log_name and not running(paths, log_name):
            break
        time.sleep(1.0)
    tail = ""
    log = paths.logs / f"{log_name}.log"
    if log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"{what} did not start; see {log}\n{tail}")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


# --- PostgreSQL and Redis --------------------------------------------------------------------


def _pg_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return candidates[-1].parent


def _as_pg_user() -> list[str]:
    """PostgreSQL refuses to run as root: then it runs as the ``postgres`` user the package made."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def blocking_directory(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory from ``/`` down to ``path`` (itself included) that user ``uid`` (in groups
    ``gids``) cannot enter (no search bit for it), or None when every one lets it through."""
    import stat

    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            return None  # made later, by us (root), with the modes we give it
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def _check_pg_user_reaches(folder: Path) -> None:
    """Run as root, PostgreSQL runs as ``postgres`` (``runuser``): it must be able to enter every
    directory down to its data folder, else initdb fails with a bare "Permission denied"."""
    import grp
    import pwd

    user = pwd.getpwnam("postgres")
    gids = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if "postgres" in g.gr_mem}
    blocked = blocking_directory(folder, user.pw_uid, gids)
    if blocked is not None:
        raise RuntimeError(
            f"PostgreSQL runs as the user postgres (the cluster is started as root), which cannot enter "
            f"{blocked} (mode {blocked.stat().st_mode & 0o777:o}): allow it (chmod o+x {blocked}) or put the "
            f"cluster elsewhere (CLUSTER_HOME=/srv/cht-bridge-cluster)"
        )


def start_postgres(paths: Paths) -> None:
    bindir, as_user = _pg_bin(), _as_pg_user()
    password = cluster_secrets(paths)["postgres"]
    if not (paths.pg / "PG_VERSION").exists():
        if as_user:
            _check_pg_user_reaches(paths.pg)
        paths.pg.mkdir(parents=True, exist_ok=True)
        pwfile = paths.home / "pg-password"
        pwfile.unlink(missing_ok=True)  # a crash's leftover: created anew, owner-only from the start
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        if as_user:
            shutil.chown(paths.pg, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(paths.pg, 0o700)
        os.chmod(pwfile, 0o600)
        try:
            subprocess.run(
                [*as_user, str(bindir / "initdb"), "-D", str(paths.pg), "-U", "airflow", "--pwfile", str(pwfile),
                 "-A", "scram-sha-256", "-E", "UTF8"],
                check=True, capture_output=True,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
    if subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(paths.pg), "status"], capture_output=True
    ).returncode:
        options = f"-p {PORTS['postgres']} -k {paths.pg} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = paths.pg / "server.log"
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(paths.pg), "-o", options, "-l", str(log), "-w", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
    import psycopg

    with psycopg.connect(_pg_url(password, "postgres", "postgresql"), autocommit=True) as conn:
        for db in ("airflow", "cht_bridge"):
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{db}"')


def stop_postgres(paths: Paths) -> None:
    if (paths.pg / "postmaster.pid").exists():
        subprocess.run(
            [*_as_pg_user(), str(_pg_bin() / "pg_ctl"), "-D", str(paths.pg), "-m", "fast", "stop"], capture_output=True
        )


def start_redis(paths: Paths) -> None:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    data = paths.home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [server, "--port", str(PORTS["redis"]), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]  # fmt: skip
    spawn(paths, "redis", argv, dict(os.environ))
    _wait("redis-server", lambda: _port_open(PORTS["redis"]), paths, "redis", 30)


# --- the sandbox (CHT, receiver, CHT API, FHIR) ------------------------------------------------


def host_sandbox(paths: Paths, docs: int) -> int:
    """The process that keeps the sandbox's servers up (``sandbox`` subcommand), until SIGTERM.

    Writes the Connections (``AIRFLOW_CONN_*``) into ``run/sandbox.json`` (0600), and applies
    ``run/receiver-settings.json`` (e.g. ``{"delay": 0.05}``) to the receiver whenever it changes.
    """
    from standins import stack as sandbox

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stack = sandbox.start(paths.home / "sandbox", docs=docs)
    try:
        conns = stack.connections()
        # A second destination Connection to the same receiver: pipelines spread over two
        # destination pools, as they would over two EMRs.
        second = json.loads(conns["AIRFLOW_CONN_DEMO_RECEIVER"])
        conns["AIRFLOW_CONN_SECOND_RECEIVER"] = json.dumps(second)
        _private_json(
            paths.sandbox_env,
            {"environment": conns, "receiver_dir": str(stack.receiver.directory), "receiver_url": stack.receiver.url,
             "couch_url": stack.couch.url, "couch_admin": list(stack.couch.admin_auth), "seeded": stack.seeded},
        )  # fmt: skip
        seen = 0.0
        while True:
            settings = paths.receiver_settings
            if settings.exists() and settings.stat().st_mtime != seen:
                seen = settings.stat().st_mtime
                stack.receiver.configure(**json.loads(settings.read_text()))
            time.sleep(0.5)
    finally:
        paths.sandbox_env.unlink(missing_ok=True)
        stack.stop()


# --- Airflow ---------------------------------------------------------------------------------


def _airflow(*args: str) -> list[str]:
    return [str(VENV_BIN / "airflow"), *args]


def components() -> dict[str, list[str]]:
    """Airflow's processes, by the names of their pid and log files."""
    procs = {
        "api-server": _airflow("api-server", "--port", str(PORTS["api"]), "--host", "127.0.0.1"),
        "scheduler": _airflow("scheduler"),
        "dag-processor": _airflow("dag-processor"),
        "triggerer": _airflow("triggerer"),
    }
    for name in WORKERS:
        procs[name] = _airflow("celery", "worker", "--celery-hostname", f"{name}@%h", "--without-gossip",
                               "--without-mingle")  # fmt: skip
    return procs


def _worker_env(env: dict[str, str], name: str) -> dict[str, str]:
    return {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(PORTS[f"{name}_logs"])}


def start_component(paths: Paths, name: str, env: dict[str, str]) -> int:
    argv = components()[name]
    return spawn(paths, name, argv, _worker_env(env, name) if name in WORKERS else env)


def _api_healthy() -> bool:
    try:
        return requests.get(f"{api_url()}/api/v2/monitor/health", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def start(paths: Paths = Paths(), docs: int = 5000) -> None:
    paths.run.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.home, 0o755)  # the postgres user must reach pg/ inside it
    cluster_secrets(paths)
    start_postgres(paths)
    print(f"PostgreSQL on 127.0.0.1:{PORTS['postgres']} (databases airflow, cht_bridge)", flush=True)
    start_redis(paths)
    print(f"Redis on 127.0.0.1:{PORTS['redis']}", flush=True)
    if not running(paths, "sandbox"):
        paths.sandbox_env.unlink(missing_ok=True)
    spawn(paths, "sandbox", [sys.executable, "-m", "standins.cluster", "sandbox", "--docs", str(docs)],
          {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])})  # fmt: skip
    _wait("the sandbox (CHT, receiver, CHT API, FHIR)", paths.sandbox_env.exists, paths, "sandbox", 600)
    print("Sandbox CHT, receiver, CHT API and FHIR server up", flush=True)
    if not paths.pipelines.exists():
        shutil.copytree(ROOT / "include" / "pipelines", paths.pipelines)
    env = airflow_environment(paths)
    _private_json(
        Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]),
        {ADMIN: cluster_secrets(paths)["admin"], POOLS_USER: cluster_secrets(paths)["pools_user"]},
    )
    paths.airflow_home.mkdir(parents=True, exist_ok=True)
    migrate = subprocess.run(_airflow("db", "migrate"), env=env, cwd=ROOT, capture_output=True, text=True)
    if migrate.returncode:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-2000:]}")
    for name in components():
        start_component(paths, name, env)
    _wait("the api-server", _api_healthy, paths, "api-server")
    _wait("the Celery workers", lambda: all(_worker_ready(paths, w) for w in WORKERS), paths, WORKERS[0])
    from cht_bridge.pools import ensure_pools_cli

    ensure_pools_cli(env)
    print(f"Airflow (CeleryExecutor, {len(WORKERS)} workers) on {api_url()}  user {ADMIN}, password in "
          f"{env['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE']}", flush=True)  # fmt: skip


def _worker_ready(paths: Paths, name: str) -> bool:
    log = paths.logs / f"{name}.log"
    return log.exists() and " ready." in log.read_text(errors="replace")


def stop(paths: Paths = Paths()) -> list[str]:
    """Stop every component this module started (workers first: they finish or give back their tasks)."""
    stopped = []
    order = [*WORKERS, "triggerer", "scheduler", "dag-processor", "api-server", "sandbox", "redis"]
    for name in order:
        if stop_group(paths, name):
            stopped.append(name)
    stop_postgres(paths)
    return stopped


def status(paths: Paths = Paths()) -> dict[str, int | None]:
    names = [*components(), "sandbox", "redis"]
    return {name: running(paths, name) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "sandbox"])
    parser.add_argument("--docs", type=int, default=int(os.environ.get("CLUSTER_DOCS", 5000)))
    args = parser.parse_args(argv)
    paths = Paths()
    if args.command == "sandbox":
        return host_sandbox(paths, args.docs)
    if args.command == "stop":
        print("stopped:", ", ".join(stop(paths)) or "nothing was running")
        return 0
    if args.command == "status":
        for name, pid in status(paths).items():
            print(f"{name:14} {'up, pid ' + str(pid) if pid else 'down'}")
        if not paths.sandbox_env.exists() or not _port_open(PORTS["postgres"]):
            return 0
        # Tasks naming a missing pool are never scheduled: say so, and fail (cht_bridge.pools --check).
        return subprocess.run(
            [sys.executable, "-m", "cht_bridge.pools", "--check"], env=airflow_environment(paths)
        ).returncode
    try:
        start(paths, args.docs)
    except BaseException:
        stop(paths)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
