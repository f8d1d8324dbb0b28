"""Which pipelines the page shows, where their ledgers are, and their last Airflow runs.

The pipelines are read from the same folders as the DAG files read them (``CHT_BRIDGE_PIPELINES``
and ``CHT_BRIDGE_REVERSE_PIPELINES``, else ``include/pipelines`` and ``include/reverse`` next to
``plugins/``), so a pipeline's row has its DAG's id. A file is parsed again only when it changed.
A file that fails its checks is left out here: its DAG already shows the error in Airflow.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
FORWARD, REVERSE = "forward", "reverse"


@dataclass(frozen=True)
class Entry:
    """One pipeline as the page needs it: no mapping, no credentials."""

    name: str
    kind: str  # forward | reverse
    schedule: str | None
    state_conn_id: str | None
    file: str


def folders() -> dict[str, Path]:
    return {
        FORWARD: Path(os.environ.get("CHT_BRIDGE_PIPELINES", ROOT / "include" / "pipelines")),
        REVERSE: Path(os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES", ROOT / "include" / "reverse")),
    }


_cache: dict[Path, tuple[float, Entry | None]] = {}
_lock = threading.Lock()


def pipelines() -> list[Entry]:
    """Every valid pipeline file of both folders, by name (the first file of a name wins, as in the DAG files)."""
    found: dict[str, Entry] = {}
    for kind, folder in folders().items():
        for path in sorted(folder.glob("*.y*ml")):
            entry = _entry(path, kind)
            if entry is not None:
                found.setdefault(entry.name, entry)
    return sorted(found.values(), key=lambda e: e.name)


def _entry(path: Path, kind: str) -> Entry | None:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    with _lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    entry = _load(path, kind)
    with _lock:
        _cache[path] = (mtime, entry)
    return entry


def _load(path: Path, kind: str) -> Entry | None:
    from cht_bridge.errors import ConfigError

    try:
        if kind == FORWARD:
            from cht_bridge.config import load_pipeline

            p: Any = load_pipeline(path)
        else:
            from cht_bridge.reverse.loader import load_reverse_pipeline

            p = load_reverse_pipeline(path)
    except ConfigError:
        return None
    return Entry(p.name, kind, p.schedule, p.state_conn_id, str(path))


def by_store(entries: Iterable[Entry]) -> dict[str | None, list[Entry]]:
    """Pipelines grouped by the state store they write (``None``: the default one)."""
    from cht_bridge.hooks.state import STATE_CONN_ENV

    groups: dict[str | None, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.state_conn_id or os.environ.get(STATE_CONN_ENV), []).append(e)
    return groups


def last_runs(dag_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The newest run of each DAG from Airflow's metadata database (the api-server may read it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    ids = list(dag_ids)
    if not ids:
        return {}
    newest = (
        select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
        .where(DagRun.dag_id.in_(ids))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    query = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_after, DagRun.end_date).join(
        newest, (DagRun.dag_id == newest.c.dag_id) & (DagRun.run_after == newest.c.run_after)
    )
    with create_session() as session:
        rows = session.execute(query).all()
    return {
        r.dag_id: {"run_id": r.run_id, "state": str(getattr(r.state, "value", r.state)), "run_after": r.run_after}
        for r in rows
    }
