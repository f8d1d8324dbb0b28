"""The SQLite store's WAL interval and page cache (``_sqlite_pragmas``): what a larger interval
must keep.

- every connection the store opens has the interval and the cache, also a fresh one from the pool;
- the WAL file stays bounded by the interval plus one commit, and a commit past the interval is
  checkpointed into the database (SQLite does it on commit);
- closing the store (the end of a task) checkpoints everything and removes the WAL file;
- a process killed with SIGKILL after ``record`` returned loses none of its rows nor its checkpoint,
  while they are still only in the WAL (not checkpointed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from cht_bridge.state import Outcome, StateStore
from cht_bridge.state.store import CACHE_KIB, WAL_CHECKPOINT_PAGES

ROOT = Path(__file__).resolve().parents[3]


def outcomes(n: int, seed: int) -> list[Outcome]:
    """``n`` delivered outcomes with uuid ids (random keys: each page lands on most index leaves)."""
    rng = random.Random(seed)
    ids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
    return [Outcome(i, "1-a", True, "h" * 64, 201, f"rcv-{i[:8]}", key="k" * 32) for i in ids]


def pragma(store: StateStore, name: str) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_every_connection_has_the_interval_and_the_cache(store) -> None:
    assert pragma(store, "wal_autocheckpoint") == WAL_CHECKPOINT_PAGES
    assert pragma(store, "cache_size") == -CACHE_KIB
    assert pragma(store, "journal_mode") == "wal"
    store.engine.dispose()  # a new connection gets them too
    assert pragma(store, "wal_autocheckpoint") == WAL_CHECKPOINT_PAGES
    assert pragma(store, "cache_size") == -CACHE_KIB


def test_the_wal_stays_bounded_and_closing_the_store_moves_it_into_the_database(tmp_path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{path}")
    wal = Path(f"{path}-wal")
    page = pragma(store, "page_size")
    sizes = []
    for n in range(40):  # 40 pages of 2,000 documents: several checkpoints' worth of WAL
        store.record("p", outcomes(2000, n), checkpoint=[n, "seq"])
        sizes.append(wal.stat().st_size)
    one_commit = max(b - a for a, b in zip(sizes, sizes[1:], strict=False))
    assert max(sizes) <= (WAL_CHECKPOINT_PAGES + 1) * (page + 24) + one_commit  # the interval plus one commit
    assert max(sizes) > 5000 * (page + 24)  # five times SQLite's default interval: ours is in effect
    assert path.stat().st_size > 1000 * page  # checkpoints during the run copied pages into the database
    assert store.counts("p") == {"delivered": 80_000}
    store.close()
    assert not wal.exists()  # the last connection checkpointed it and removed it
    again = StateStore(f"sqlite:///{path}")
    try:
        assert again.counts("p") == {"delivered": 80_000} and again.checkpoint("p") == [39, "seq"]
    finally:
        again.close()


CHILD = """
import os, signal, sys
from cht_bridge.state import StateStore
sys.path.insert(0, {tests!r})
from test_wal_interval import outcomes
store = StateStore("sqlite:///" + {path!r})
for n in range(3):
    store.record("p", outcomes(2000, n), checkpoint=[n, "seq"])
print("recorded", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_killed_after_recording_loses_nothing_it_committed(tmp_path) -> None:
    path = tmp_path / "state.db"
    code = CHILD.format(tests=str(Path(__file__).parent), path=str(path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert done.stdout.strip() == "recorded"
    wal = Path(f"{path}-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the commits were still only in the WAL
    store = StateStore(f"sqlite:///{path}")
    try:
        assert store.counts("p") == {"delivered": 6000}
        assert store.checkpoint("p") == [2, "seq"]
    finally:
        store.close()
