"""Reports (reconcile, matching models) go under the artifacts location, an ObjectStoragePath; local by default."""

from __future__ import annotations

from types import SimpleNamespace

from cht_bridge.storage import artifacts_folder


def test_reports_folder_is_local_by_default_and_follows_the_artifacts_location(monkeypatch, tmp_path):
    from cht_bridge.hooks import bridge_home

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHT_BRIDGE_ARTIFACTS", raising=False)
    assert str(artifacts_folder(bridge_home(), "reconcile")) == str(bridge_home() / "reconcile")  # as before
    monkeypatch.setenv("CHT_BRIDGE_ARTIFACTS", f"file://{tmp_path}/shared")
    shared = artifacts_folder(bridge_home(), "reconcile")
    assert shared.protocol == "file" and shared.path == f"{tmp_path}/shared/reconcile"
    assert str(artifacts_folder(bridge_home(), "reconcile", str(tmp_path / "mine"))) == str(
        tmp_path / "mine"
    )  # the Param wins


def test_reconcile_reports_are_written_through_an_object_storage_path(monkeypatch, tmp_path):
    from cht_bridge.aggregate.reconcile_tracker import TrackerReconciliation, _write
    from cht_bridge.hooks import bridge_home

    monkeypatch.setenv("CHT_BRIDGE_ARTIFACTS", f"file://{tmp_path}/shared")
    result = TrackerReconciliation("visits", "2026-01", "2026-02")
    _write(
        artifacts_folder(bridge_home(), "reconcile"), [("missing_in_dhis2", "202601", "OU1", 1, 0, "e1", "r1")], result
    )
    written = sorted(p.name for p in (tmp_path / "shared" / "reconcile").iterdir())
    assert [n.rsplit(".", 1)[1] for n in written] == ["csv", "html"]
    assert "OU1" in (tmp_path / "shared" / "reconcile" / written[0]).read_text(encoding="utf-8")
    assert result.csv.startswith("file://") and result.csv.endswith(".csv")


def test_the_model_report_goes_to_the_artifacts_location_and_the_model_stays_in_the_store(monkeypatch, tmp_path):
    from cht_bridge.operators.matching_train import _write_report
    from cht_bridge.state.matching import MatchingStore
    from cht_bridge.state.store import StateStore

    monkeypatch.delenv("CHT_BRIDGE_MODELS_FOLDER", raising=False)
    monkeypatch.setenv("CHT_BRIDGE_ARTIFACTS", f"file://{tmp_path}/shared")
    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    try:
        model_id = MatchingStore(store).add_model({"weights": {}}, True, "# model report")
        _write_report(SimpleNamespace(store=store), model_id)
        assert (tmp_path / "shared" / "models" / f"model-{model_id}.md").read_text(encoding="utf-8") == "# model report"
        assert MatchingStore(store).newest_passing().id == model_id  # what match.model: learned reads
    finally:
        store.close()
