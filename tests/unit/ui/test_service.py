"""The page's overview from pipeline files and stores: only the DAG ids a user may read, one row
per pipeline, and a store that cannot be read marks its pipelines without hiding the others."""

from __future__ import annotations

from datetime import UTC, datetime

from cht_bridge.ui import pages, service
from tests.integration.dagrun import write_pipeline


def test_the_overview_lists_the_readable_pipelines_and_survives_an_unreadable_store(tmp_path, monkeypatch):
    folder = tmp_path / "pipelines"
    write_pipeline(folder, "ok_pipeline", schedule="@hourly")
    write_pipeline(folder, "hidden_pipeline")
    write_pipeline(folder, "far_pipeline", state={"conn_id": "unreachable_store"})
    monkeypatch.setenv("CHT_BRIDGE_PIPELINES", str(folder))
    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(tmp_path / "none"))
    monkeypatch.setenv("AIRFLOW_CONN_UNREACHABLE_STORE", "postgresql://u:secret@127.0.0.1:1/db")
    when = datetime(2026, 12, 1, tzinfo=UTC)
    runs = {"ok_pipeline": {"run_id": "scheduled__1", "state": "success", "run_after": when}}

    rows = service.overview({"ok_pipeline", "far_pipeline", "cht_bridge_replay"}, runs=lambda ids: runs)
    assert [r["pipeline"] for r in rows] == ["far_pipeline", "ok_pipeline"]  # hidden_pipeline is not readable
    far, ok = rows
    assert far["error"] == "state store unreachable_store cannot be read: OperationalError" and far["counts"] == {}
    assert ok["error"] is None and ok["schedule"] == "@hourly" and ok["last_run"]["run_after"] == when
    html = pages.pipelines_page(rows, "/cht-bridge")
    assert "secret" not in html and "cannot be read" in html
    assert "/dags/ok_pipeline/runs/scheduled__1" in html
    assert service.find("hidden_pipeline", {"ok_pipeline"}) is None
    assert service.find("ok_pipeline", {"ok_pipeline"}).kind == "forward"
