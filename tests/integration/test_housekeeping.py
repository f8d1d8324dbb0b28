"""``cht_bridge_housekeeping`` as a real DAG run: what is past its retention goes, the rest stays, and
a dry run removes nothing and reports the same counts."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from tests.integration.dagrun import run_dag, state_store
from tests.integration.reverse_setup import csv_pipeline, place_table

pytestmark = pytest.mark.integration

OLD, RECENT = timedelta(days=40), timedelta(days=1)  # against the default 30 days of retention
ROWS = {  # source id -> (status, closed this long ago)
    "old-done": ("done", OLD),
    "old-skipped": ("skipped", OLD),
    "recent-done": ("done", RECENT),
    "old-review": ("review", OLD),
    "old-unplaced": ("unplaced", OLD),
}
CSV = "contact_id,given_name,index_case_id\nc-1,Achieng,case-9\n"


def _age(path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


@pytest.fixture
def setting(tmp_path, monkeypatch, airflow_db):
    """A CSV reverse pipeline with list rows in every state and drop files of every kind, and dry-run files."""
    from cht_bridge.hooks import bridge_home
    from cht_bridge.state.inbound import InboundLedger, InboundRow, inbound
    from cht_bridge.state.matching import MatchingStore, labels_table

    lists = tmp_path / "lists"
    lists.mkdir()
    files = {name: lists / name for name in ("read-old.csv", "read-new.csv", "unread-old.csv", "changed-old.csv")}
    for i, path in enumerate(files.values()):
        path.write_text(CSV + f"c-{i + 2},Brian,case-9\n")
    for name in ("read-old.csv", "unread-old.csv", "changed-old.csv"):
        _age(files[name], 10)
    digest = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    checkpoint = {"read-old.csv": digest["read-old.csv"], "read-new.csv": digest["read-new.csv"]}
    checkpoint["changed-old.csv"] = hashlib.sha256(b"an earlier export under the same name").hexdigest()

    folder = tmp_path / "reverse"
    _, name = csv_pipeline(folder, lists, place_table(tmp_path / "places.csv"))
    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(folder))
    store = state_store()
    try:
        ledger = InboundLedger(store)
        record = {"person": {"given_name": "Achieng", "phone": "+254712000001"}}
        ledger.receive(name, [InboundRow(name, i, "1", "received", record=record) for i in ROWS], checkpoint, "r1")
        now = datetime.now(UTC)
        with store.engine.begin() as conn:  # as the rows stood after their runs, some long ago
            for source_id, (status, ago) in ROWS.items():
                conn.execute(
                    update(inbound)
                    .where(inbound.c.pipeline == name, inbound.c.source_id == source_id)
                    .values(status=status, updated_at=now - ago)
                )
        answers = MatchingStore(store)  # a reviewer's answers: labels keep the list row's person fields
        answers.add_answer(name, "old-done", ["p-1"], 0, False, {"given_name": "Achieng"}, "hc-1", "admin")
        answers.add_answer(name, "recent-done", ["p-2"], None, True, {"given_name": "Brian"}, "hc-1", "admin")
        with store.engine.begin() as conn:
            conn.execute(
                update(labels_table).where(labels_table.c.source_id == "old-done").values(answered_at=now - OLD)
            )
    finally:
        store.close()

    dry_runs = bridge_home() / "dry_runs" / f"p_{uuid.uuid4().hex[:8]}"
    dry_runs.mkdir(parents=True)
    (dry_runs / "old.json").write_text("{}")
    (dry_runs / "new.json").write_text("{}")
    _age(dry_runs / "old.json", 8)
    return name, files, dry_runs


def _records(name: str) -> dict[str, bool]:
    from cht_bridge.state.inbound import InboundLedger

    store = state_store()
    try:
        ledger = InboundLedger(store)
        return {i: ledger.get(name, i, "1").record is not None for i in ROWS}
    finally:
        store.close()


def _label_people(name: str) -> dict[str, bool]:
    from cht_bridge.state.matching import MatchingStore

    store = state_store()
    try:
        return {label.source_id: label.person is not None for label in MatchingStore(store).labels([name])}
    finally:
        store.close()


def test_housekeeping_removes_what_is_past_retention_and_a_dry_run_removes_nothing(
    setting, monkeypatch, tmp_path, capfd
):
    name, files, dry_runs = setting
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()

    state, dry = run_dag(monkeypatch, pipelines, "cht_bridge_housekeeping", conf={"dry_run": True})
    assert state == "success" and dry["dry_run"] is True
    assert dry["records_erased_by_pipeline"] == {name: 2}
    assert dry["csv_files_by_pipeline"] == {name: 1}
    assert dry["dry_run_files_deleted"] == 1
    assert dry["label_people_erased"] == 1
    assert all(_records(name).values())  # nothing removed
    assert _label_people(name) == {"old-done": True, "recent-done": True}
    assert all(p.exists() for p in files.values()) and (dry_runs / "old.json").exists()

    state, done = run_dag(monkeypatch, pipelines, "cht_bridge_housekeeping")
    assert state == "success" and done["dry_run"] is False
    assert _label_people(name) == {"old-done": False, "recent-done": True}  # the label stays, its person goes
    for key in ("records_erased_by_pipeline", "csv_files_by_pipeline", "dry_run_files_deleted", "label_people_erased"):
        assert done[key] == dry[key]
    assert (done["retention_days"], done["csv_days"], done["dry_run_days"]) == (30, 7, 7)
    assert _records(name) == {
        "old-done": False,  # finished 40 days ago: erased
        "old-skipped": False,
        "recent-done": True,  # finished yesterday: kept until its retention
        "old-review": True,  # open rows keep their record, however old
        "old-unplaced": True,
    }
    assert {n for n, p in files.items() if p.exists()} == {"read-new.csv", "unread-old.csv", "changed-old.csv"}
    assert not (dry_runs / "old.json").exists() and (dry_runs / "new.json").exists()

    output = "".join(capfd.readouterr())
    assert "housekeeping (dry run" in output and "2 inbound records erased" in output
    assert "Achieng" not in output and "+254712000001" not in output and "read-old.csv" not in output
    assert "Achieng" not in str(done)

    state, again = run_dag(monkeypatch, pipelines, "cht_bridge_housekeeping")  # nothing left to remove
    assert state == "success" and again["records_erased"] == again["csv_files_deleted"] == 0


def test_a_setting_comes_from_its_environment_variable_and_a_bad_one_is_a_clear_error(monkeypatch):
    from cht_bridge.errors import ParamError
    from cht_bridge.operators.housekeeping import housekeeping_params

    monkeypatch.setenv("CHT_BRIDGE_RETENTION_DAYS", "90")
    params = housekeeping_params()
    assert (params["retention_days"].value, params["csv_days"].value, params["dry_run"].value) == (90, 7, False)
    monkeypatch.setenv("CHT_BRIDGE_CSV_DAYS", "a week")
    with pytest.raises(ParamError, match="CHT_BRIDGE_CSV_DAYS must be a whole number of days"):
        housekeeping_params()


def test_dry_run_files_under_the_artifacts_location_are_deleted_there(tmp_path, monkeypatch, airflow_db):
    """CHT_BRIDGE_ARTIFACTS (here a file:// URL, as s3:// would be): housekeeping cleans where dry runs write."""
    from cht_bridge.hooks import bridge_home

    shared = tmp_path / "artifacts" / "dry_runs" / "p1"
    shared.mkdir(parents=True)
    for name in ("old.json", "new.json"):
        (shared / name).write_text("{}")
    _age(shared / "old.json", 8)
    home = bridge_home() / "dry_runs" / f"p_{uuid.uuid4().hex[:8]}"  # the local default is not where they write
    home.mkdir(parents=True)
    (home / "old.json").write_text("{}")
    _age(home / "old.json", 8)
    monkeypatch.setenv("CHT_BRIDGE_ARTIFACTS", f"file://{tmp_path / 'artifacts'}")
    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(tmp_path / "no-reverse"))
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()

    state, done = run_dag(monkeypatch, pipelines, "cht_bridge_housekeeping")
    assert state == "success" and done["dry_run_files_deleted"] == 1
    assert not (shared / "old.json").exists() and (shared / "new.json").exists()
    assert (home / "old.json").exists()
