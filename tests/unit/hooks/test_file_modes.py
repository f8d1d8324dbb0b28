"""The default SQLite store and its folder are owner-only, SQLite's own files too, whatever the umask."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from cht_bridge.hooks.state import bridge_home, default_state_url
from cht_bridge.state import Outcome, StateStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    old = os.umask(0o022)  # a usual worker's umask: new files 0644, folders 0755
    yield tmp_path / "airflow" / "cht_bridge"
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_default_store_is_owner_only_with_its_wal_files(home):
    store = StateStore(default_state_url())
    try:
        store.record("p", [Outcome("a", "1-a", True, "h")], checkpoint=1)
        with store.engine.connect():  # the WAL and shared-memory files exist while a connection is open
            companions = [p for p in home.iterdir() if p.name != "state.db"]
            assert {p.name for p in companions} >= {"state.db-wal", "state.db-shm"}
            assert {p.name: mode(p) for p in companions} == {p.name: 0o600 for p in companions}
        assert (mode(home), mode(home / "state.db")) == (0o700, 0o600)
    finally:
        store.close()


def test_a_store_and_folder_made_looser_earlier_are_tightened(home, caplog):
    home.mkdir(parents=True, mode=0o755)
    os.chmod(home, 0o755)
    earlier = sqlite3.connect(home / "state.db")  # as an earlier version left it: 0644, WAL files too
    earlier.execute("PRAGMA journal_mode=WAL")
    earlier.execute("CREATE TABLE t (x)")
    earlier.execute("INSERT INTO t VALUES (1)")
    earlier.commit()
    try:
        loose = [home / "state.db", home / "state.db-wal", home / "state.db-shm"]
        assert [mode(p) for p in [home, *loose]] == [0o755, 0o644, 0o644, 0o644]
        url = default_state_url()
        assert url == f"sqlite:///{home / 'state.db'}"
        assert [mode(p) for p in [home, *loose]] == [0o700, 0o600, 0o600, 0o600]
        assert "was readable by other users" in caplog.text
        assert earlier.execute("SELECT x FROM t").fetchall() == [(1,)]  # nothing lost
    finally:
        earlier.close()


def test_dry_run_files_live_in_the_owner_only_folder(home):
    from cht_bridge.sync import DryRun

    path = DryRun.under(bridge_home(), "referrals", "manual__2026-12-04").write("referrals", {}, {})
    assert path.is_relative_to(home) and mode(home) == 0o700 and mode(path) == 0o600
