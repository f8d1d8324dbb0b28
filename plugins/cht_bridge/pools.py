"""One Airflow pool per Connection a task reads or writes, so many pipelines share a CHT politely.

Forty pipelines scheduled at the same minute would otherwise open forty ``_changes`` readers on one
CHT CouchDB. With per-Connection pools switched on (``CHT_BRIDGE_CONNECTION_POOLS=true``, set in
``include/cluster.env`` for ``make cluster`` and docker compose, and by ``make airflow``), every
task that reads a CHT instance runs in the pool of its CHT Connection (``cht_bridge__<conn_id>``),
so at most that pool's slots read it at once, whatever the number of workers; a reverse pipeline's
``receive`` (which reads only its EMR source) runs in the source Connection's pool, its writes in
the CHT API Connection's. An Airflow task has exactly one pool: a forward ``sync`` task reads CHT
and writes its destination in one stream, so it takes its CHT Connection's pool, and each of its
sends takes one of the destination Connection's *send slots* in the state store
(``state/send_slots.py``), a lease-based semaphore of the same size that every worker shares.

Off by default, because a task naming a pool that does not exist is never run: Airflow 3's
scheduler skips it at every loop (``SchedulerJobRunner._executable_task_instances_to_queued`` in
``airflow/jobs/scheduler_job_runner.py``: "Tasks using non-existent pool '%s' will not be
scheduled", the task instance stays ``scheduled``), and the DAG processor only adds a DAG warning
("references non-existent pools", ``DagBag.dag_warnings``). So a deployment that did not create
the pools must not get tasks naming them: off, every task runs in ``default_pool``.

The pool of a task is named at parse time from the pipeline file and this setting alone (pure: no
database, no network). Pools are *created* by a deployment step, since Airflow 3 tasks may not use
the metadata database: ``python -m cht_bridge.pools`` (run by ``make cluster`` at every start, by
``make airflow`` and by docker-compose's ``airflow-init``) creates each missing pool with
``CHT_BRIDGE_POOL_SLOTS__<CONN_ID>`` or ``CHT_BRIDGE_POOL_SLOTS`` slots (default 4) through
Airflow's own ``airflow pools`` CLI, and never resizes an existing pool (an operator may have
changed it in the UI). ``python -m cht_bridge.pools --check`` lists the missing ones and exits 1
(``make cluster-status`` runs it). A pipeline file added later on a new Connection gets its pool from
the ``cht_bridge_pools`` DAG (``operators/pools.py``), which runs the same planning (``uses``,
``wanted``, ``missing``) and creates the pools through the api-server's REST API (``airflow_api.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PREFIX = "cht_bridge__"
SLOTS_ENV = "CHT_BRIDGE_POOL_SLOTS"
DEFAULT_SLOTS = 4
ENABLED_ENV = "CHT_BRIDGE_CONNECTION_POOLS"
#: Airflow's own pool (``Pool.DEFAULT_POOL_NAME``), which always exists.
DEFAULT_POOL = "default_pool"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("", "false", "0", "no", "off")


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this deployment runs tasks in per-Connection pools (``CHT_BRIDGE_CONNECTION_POOLS``)."""
    value = environ.get(ENABLED_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from cht_bridge.errors import SettingError

    raise SettingError(ENABLED_ENV, f"'{value}' is neither true nor false")


def task_pool(conn_id: str, environ: Mapping[str, str] = os.environ) -> str:
    """The pool a task using ``conn_id`` names: its Connection's when switched on, else ``default_pool``."""
    return pool_name(conn_id) if enabled(environ) else DEFAULT_POOL


def pool_name(conn_id: str) -> str:
    """The pool of every task that reads or writes the Connection ``conn_id``."""
    return f"{PREFIX}{conn_id}"


def pool_slots(conn_id: str, environ: Mapping[str, str] = os.environ) -> int:
    """Slots of a new pool: ``CHT_BRIDGE_POOL_SLOTS__<CONN_ID>``, else ``CHT_BRIDGE_POOL_SLOTS``, else 4."""
    from cht_bridge.env_settings import positive_whole_number

    for variable in (f"{SLOTS_ENV}__{re.sub(r'[^A-Z0-9]', '_', conn_id.upper())}", SLOTS_ENV):
        slots = positive_whole_number(variable, environ, "pool slots")
        if slots is not None:
            return slots
    return DEFAULT_SLOTS


def uses(pipelines: Path, reverse: Path | None = None) -> list[tuple[str, str, str]]:
    """``(conn_id, role, pipeline name)`` for every Connection each valid pipeline file names.

    Invalid files are left out: their DAG fails with the file's problems and needs no pool.
    """
    from cht_bridge.config import load_pipeline
    from cht_bridge.errors import ConfigError

    found: list[tuple[str, str, str]] = []
    for path in sorted(Path(pipelines).glob("*.y*ml")):
        try:
            p = load_pipeline(path)
        except ConfigError:
            continue
        found += [(p.cht_conn_id, "CHT", p.name), (p.destination.conn_id, "destination", p.name)]
    if reverse is not None and Path(reverse).is_dir():
        from cht_bridge.reverse.loader import load_reverse_pipeline

        for path in sorted(Path(reverse).glob("*.y*ml")):
            try:
                r = load_reverse_pipeline(path)
            except ConfigError:
                continue
            found.append((r.target.conn_id, "CHT", r.name))
            if r.source.conn_id:
                found.append((r.source.conn_id, "source", r.name))
    return found


def connections_of(pipelines: Path, reverse: Path | None = None) -> dict[str, set[str]]:
    """Every Connection the valid pipeline files name, with the roles it plays (for the description)."""
    return roles_of(uses(pipelines, reverse))


def roles_of(found: Iterable[tuple[str, str, str]]) -> dict[str, set[str]]:
    """Connection -> the roles it plays, from ``uses``."""
    roles: dict[str, set[str]] = {}
    for conn, role, _ in found:
        roles.setdefault(conn, set()).add(role)
    return roles


def pipelines_in_pools(found: Iterable[tuple[str, str, str]]) -> dict[str, list[str]]:
    """Pool name -> the pipelines with a task running in it (what waits while the pool is missing), from
    ``uses``: a CHT or source Connection's pool; a destination's sends take send slots, not a pool."""
    names: dict[str, set[str]] = {}
    for conn, role, name in found:
        if role != "destination":
            names.setdefault(pool_name(conn), set()).add(name)
    return {pool: sorted(members) for pool, members in names.items()}


def wanted(connections: Mapping[str, set[str]], environ: Mapping[str, str] = os.environ) -> dict[str, tuple[int, str]]:
    """Pool name -> (slots, description) for each Connection a task runs in the pool of: CHT and source
    Connections. A Connection that is only a destination needs none (its send slots limit it)."""
    return {
        pool_name(conn): (
            pool_slots(conn, environ),
            f"CHT Bridge: tasks using the {' and '.join(sorted(roles))} Connection {conn}",
        )
        for conn, roles in connections.items()
        if roles - {"destination"}
    }


def missing(want: Mapping[str, tuple[int, str]], existing: Iterable[str]) -> dict[str, tuple[int, str]]:
    have = set(existing)
    return {name: spec for name, spec in want.items() if name not in have}


def airflow_command(*args: str) -> list[str]:
    """``python -m airflow ...`` with this interpreter: no ``airflow`` script need sit beside it (in the
    official apache/airflow image it is in ``~/.local/bin``, and a venv's may not be on ``PATH``)."""
    return [sys.executable, "-m", "airflow", *args]


def _airflow(env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run(airflow_command(*args), env=dict(env), capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"airflow {' '.join(args[:2])} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def _folders(env: Mapping[str, str]) -> tuple[Path, Path]:
    root = Path(__file__).resolve().parents[2]
    pipelines = Path(env.get("CHT_BRIDGE_PIPELINES", root / "include" / "pipelines"))
    reverse = Path(env.get("CHT_BRIDGE_REVERSE_PIPELINES", root / "include" / "reverse"))
    return pipelines, reverse


def missing_pools(env: Mapping[str, str] | None = None) -> dict[str, tuple[int, str]]:
    """The pools the pipeline folders named in ``env`` need and Airflow does not have (none when off)."""
    env = dict(os.environ if env is None else env)
    if not enabled(env):
        return {}
    existing = [p["pool"] for p in json.loads(_airflow(env, "pools", "list", "--output", "json") or "[]")]
    return missing(wanted(connections_of(*_folders(env)), env), existing)


def ensure_pools_cli(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Create the missing pools of the pipeline folders named in ``env``; return those created."""
    env = dict(os.environ if env is None else env)
    created = {}
    for name, (slots, description) in missing_pools(env).items():
        _airflow(env, "pools", "set", name, str(slots), description)
        created[name] = slots
    return created


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cht_bridge.pools", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="list the missing pools and exit 1 if any; create none")
    args = parser.parse_args(argv)
    if not enabled():
        print(f"per-Connection pools are off ({ENABLED_ENV}): every task runs in {DEFAULT_POOL}")
        return 0
    if args.check:
        absent = missing_pools()
        waiting = pipelines_in_pools(uses(*_folders(os.environ))) if absent else {}
        for name, (slots, description) in absent.items():
            print(
                f"missing pool {name} ({slots} slots; {description}): the tasks of "
                f"{', '.join(waiting.get(name, [])) or 'no pipeline'} will not be scheduled"
            )
        print(
            f"{len(absent)} pools missing; create them with python -m cht_bridge.pools (or trigger cht_bridge_pools)"
            if absent
            else "every pool exists"
        )
        return 1 if absent else 0
    created = ensure_pools_cli()
    for name, slots in created.items():
        print(f"created pool {name} ({slots} slots)")
    if not created:
        print("every pool exists")
    return 0


if __name__ == "__main__":
    from cht_bridge.errors import SettingError

    try:
        sys.exit(main())
    except SettingError as exc:  # a bad setting: its message, without a traceback
        print(exc, file=sys.stderr)
        sys.exit(2)
