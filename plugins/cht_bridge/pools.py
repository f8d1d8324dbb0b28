"""One Airflow pool per Connection a task reads or writes, so many pipelines share a CHT politely.

Forty pipelines scheduled at the same minute would otherwise open forty ``_changes`` readers on one
CHT CouchDB. Every task that reads a CHT instance runs in the pool of its CHT Connection
(``cht_bridge__<conn_id>``), so at most that pool's slots read it at once, whatever the number of
workers; a reverse pipeline's ``receive`` (which reads only its EMR source) runs in the source
Connection's pool. An Airflow task has exactly one pool: a forward ``sync`` task reads CHT and writes
its destination in one stream, so it takes its CHT Connection's pool; the destination's pool
bounds the tasks that use that Connection alone.

The pool of a task is named at parse time from the pipeline file alone (pure: no database, no
network). Pools are *created* by a deployment step, because a task that names a missing pool is
never scheduled, and Airflow 3 tasks may not use the metadata database: ``python -m
cht_bridge.pools`` (run by ``make cluster`` at every start and by docker-compose's ``airflow-init``)
creates each missing pool with ``CHT_BRIDGE_POOL_SLOTS__<CONN_ID>`` or ``CHT_BRIDGE_POOL_SLOTS``
slots (default 4) through Airflow's own ``airflow pools`` CLI, and never resizes an existing pool
(an operator may have changed it in the UI).
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


def pool_name(conn_id: str) -> str:
    """The pool of every task that reads or writes the Connection ``conn_id``."""
    return f"{PREFIX}{conn_id}"


def pool_slots(conn_id: str, environ: Mapping[str, str] = os.environ) -> int:
    """Slots of a new pool: ``CHT_BRIDGE_POOL_SLOTS__<CONN_ID>``, else ``CHT_BRIDGE_POOL_SLOTS``, else 4."""
    for variable in (f"{SLOTS_ENV}__{re.sub(r'[^A-Z0-9]', '_', conn_id.upper())}", SLOTS_ENV):
        value = environ.get(variable, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{variable}: '{value}' is not a positive whole number of pool slots")
            return int(value)
    return DEFAULT_SLOTS


def connections_of(pipelines: Path, reverse: Path | None = None) -> dict[str, str]:
    """Every Connection the valid pipeline files name, with the role it plays (for the description)."""
    from cht_bridge.config import load_pipeline
    from cht_bridge.errors import ConfigError

    found: dict[str, str] = {}
    for path in sorted(Path(pipelines).glob("*.y*ml")):
        try:
            p = load_pipeline(path)
        except ConfigError:
            continue  # its DAG fails with the file's problems; it needs no pool
        found.setdefault(p.cht_conn_id, "CHT")
        found.setdefault(p.destination.conn_id, "destination")
    if reverse is not None and Path(reverse).is_dir():
        from cht_bridge.reverse.loader import load_reverse_pipeline

        for path in sorted(Path(reverse).glob("*.y*ml")):
            try:
                r = load_reverse_pipeline(path)
            except ConfigError:
                continue
            found.setdefault(r.target.conn_id, "CHT")
            if r.source.conn_id:
                found.setdefault(r.source.conn_id, "source")
    return found


def wanted(connections: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> dict[str, tuple[int, str]]:
    """Pool name -> (slots, description) for each Connection."""
    return {
        pool_name(conn): (pool_slots(conn, environ), f"CHT Bridge: tasks using the {role} Connection {conn}")
        for conn, role in connections.items()
    }


def missing(want: Mapping[str, tuple[int, str]], existing: Iterable[str]) -> dict[str, tuple[int, str]]:
    have = set(existing)
    return {name: spec for name, spec in want.items() if name not in have}


def _airflow(env: Mapping[str, str], *args: str) -> str:
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, *args], env=dict(env), capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"airflow {' '.join(args[:2])} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def ensure_pools_cli(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Create the missing pools of the pipeline folders named in ``env``; return those created."""
    env = dict(os.environ if env is None else env)
    root = Path(__file__).resolve().parents[2]
    pipelines = Path(env.get("CHT_BRIDGE_PIPELINES", root / "include" / "pipelines"))
    reverse = Path(env.get("CHT_BRIDGE_REVERSE_PIPELINES", root / "include" / "reverse"))
    existing = [p["pool"] for p in json.loads(_airflow(env, "pools", "list", "--output", "json") or "[]")]
    created = {}
    for name, (slots, description) in missing(wanted(connections_of(pipelines, reverse), env), existing).items():
        _airflow(env, "pools", "set", name, str(slots), description)
        created[name] = slots
    return created


def main() -> int:
    created = ensure_pools_cli()
    for name, slots in created.items():
        print(f"created pool {name} ({slots} slots)")
    if not created:
        print("every pool exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
