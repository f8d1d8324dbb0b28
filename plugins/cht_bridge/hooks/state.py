"""Open the state store: an Airflow Connection's database, or a SQLite file in AIRFLOW_HOME.

The store lives outside Airflow's metadata database on purpose: Airflow 3 tasks may not touch
that database, and the ledger must outlive Airflow upgrades and resets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from airflow.sdk import BaseHook

from cht_bridge.errors import ConfigError
from cht_bridge.state.store import StateStore

log = logging.getLogger(__name__)

#: SQLite's own files next to the database; it creates them with the database file's mode.
SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")


def bridge_home() -> Path:
    """``$AIRFLOW_HOME/cht_bridge``, owner-only (0700): the default state store and the dry-run files.

    Both hold patient data (list rows while open, payloads), so a folder left looser by an
    earlier version or by hand is tightened, with a warning, rather than trusted.
    """
    folder = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "cht_bridge"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(folder, 0o700)
    return folder


def default_state_url() -> str:
    """The default store, ``state.db`` in ``bridge_home()``: created 0600 before SQLite opens it.

    SQLite gives its journal, WAL and shared-memory files the database file's mode, so they are
    owner-only too, whatever the worker's umask; older files of any of them are tightened.
    """
    path = bridge_home() / "state.db"
    with contextlib.suppress(FileExistsError):  # an empty file is an empty database
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        _owner_only(file, 0o600)
    return f"sqlite:///{path}"


def _owner_only(path: Path, mode: int) -> None:
    """Take from ``path`` every permission outside ``mode``; a file that is not there is fine."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)
            log.warning("%s was readable by other users (mode %o); now %o", path, current, current & mode)
    except FileNotFoundError:
        pass  # e.g. a WAL file SQLite removed in the meantime
    except PermissionError:
        log.warning("%s is readable by other users and owned by another user: make it owner-only", path)


#: Names the state store's Connection for every pipeline that does not name one itself, so a
#: deployment with workers on several machines points them all at one database.
STATE_CONN_ENV = "CHT_BRIDGE_STATE_CONN_ID"


def sqlalchemy_url(uri: str) -> str:
    """An Airflow Connection URI as SQLAlchemy wants it (``postgres://`` → psycopg 3 driver)."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return uri


#: Executors whose tasks may run on other machines than the one that ran the last task.
DISTRIBUTED_EXECUTORS = ("CeleryExecutor", "KubernetesExecutor", "EdgeExecutor", "CeleryKubernetesExecutor")


class LocalStateRefused(ConfigError):
    """The SQLite default under an executor that spreads tasks over machines: each would keep its own ledger."""

    def __init__(self, executor: str) -> None:
        self.source, self.problems = "state store", [executor]
        Exception.__init__(
            self,
            f"the state store would be the SQLite file on this worker's disk ({bridge_home()}/state.db), but "
            f"Airflow runs the {executor}: a pipeline's tasks run on different workers and each would keep its "
            f"own checkpoint and delivery ledger (documents sent twice, failures forgotten). Point every worker "
            f"at one database: set {STATE_CONN_ENV} to a PostgreSQL Connection (include/cluster.env does), or "
            f"give the pipeline `state: {{conn_id: ...}}`.",
        )


def distributed_executor() -> str | None:
    """The configured executor when it runs tasks on several machines (Celery, Kubernetes, Edge), else None."""
    try:
        from airflow.configuration import conf

        configured = conf.get("core", "executor", fallback="") or ""
    except ImportError:  # a Task-SDK-only worker: the environment is all there is
        configured = os.environ.get("AIRFLOW__CORE__EXECUTOR", "")
    for name in (part.strip().split(".")[-1].split(":")[-1] for part in configured.split(",")):
        if name in DISTRIBUTED_EXECUTORS:
            return name
    return None


def open_state_store(conn_id: str | None) -> StateStore:
    """The store named by ``conn_id``, or by ``$CHT_BRIDGE_STATE_CONN_ID``, else the default file.

    The default file is refused under a distributed executor (``LocalStateRefused``): nothing may
    depend on one worker's disk there.
    """
    conn_id = conn_id or os.environ.get(STATE_CONN_ENV)
    if not conn_id:
        executor = distributed_executor()
        if executor:
            raise LocalStateRefused(executor)
        return StateStore(default_state_url())
    return StateStore(sqlalchemy_url(BaseHook.get_connection(conn_id).get_uri()))
