"""Dry-run artifacts and the CSV drop folder on an ObjectStoragePath (here ``file://`` URLs: the same
code reads S3 or GCS), so workers on several machines share them."""

from __future__ import annotations

import json

from cht_bridge.reverse.sources.csv_folder import CsvFolderSource
from cht_bridge.storage import artifacts_root
from cht_bridge.sync import DryRun


def test_a_dry_run_writes_its_artifact_under_the_configured_location(monkeypatch, tmp_path):
    monkeypatch.setenv("CHT_BRIDGE_ARTIFACTS", f"file://{tmp_path}/shared")
    root = artifacts_root(tmp_path / "local")
    assert root.protocol == "file"
    dry = DryRun.under(root, "referrals", "manual__2026-12-04T00:00:00+00:00")
    written = dry.write("referrals", {"changes_since": 0}, {"sent": 0})
    on_disk = tmp_path / "shared" / "dry_runs" / "referrals" / "manual__2026-12-04T00_00_00+00_00.json"
    assert json.loads(on_disk.read_text())["pipeline"] == "referrals"
    assert str(written).startswith("file://") and not (tmp_path / "local").exists()


def test_without_a_location_the_artifact_stays_local_and_owner_only(monkeypatch, tmp_path):
    monkeypatch.delenv("CHT_BRIDGE_ARTIFACTS", raising=False)
    written = DryRun.under(artifacts_root(tmp_path), "p", "r1").write("p", {}, {})
    path = tmp_path / "dry_runs" / "p" / "r1.json"
    assert str(written) == str(path) and path.stat().st_mode & 0o777 == 0o600


def test_the_csv_folder_reads_an_object_storage_url_once_per_file(tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "2026-12-01.csv").write_text("id,name\n1,Amina\n2,Baraka\n")
    source = CsvFolderSource(f"file://{tmp_path}/drop")
    pages = list(source.pages(None))
    assert [r.id for r in pages[0].records] == ["1", "2"]
    assert list(source.pages(pages[-1].checkpoint)) == []  # read once: unchanged files are skipped
    assert [p.name for p in source.processed(pages[-1].checkpoint)] == ["2026-12-01.csv"]
