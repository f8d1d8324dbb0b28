"""Dry-run files are aged and deleted through the artifacts location's ObjectStoragePath, a bounded number per run."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from cht_bridge.housekeeping import clean_dry_runs
from cht_bridge.storage import storage_path


def _files(tmp_path, ages: dict[str, float]):
    for name, days in ages.items():
        path = tmp_path / "dry_runs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        stamp = time.time() - days * 86400
        os.utime(path, (stamp, stamp))


def test_old_dry_run_files_go_through_a_file_url_and_a_run_deletes_at_most_its_limit(tmp_path):
    _files(tmp_path, {"a/1.json": 9, "a/2.json": 8, "b/3.json": 10, "b/new.json": 1})
    root = storage_path(f"file://{tmp_path}")
    assert root.protocol == "file"
    now = datetime.now(UTC)
    assert clean_dry_runs(root, now, 7, dry_run=True) == 3
    assert len(list((tmp_path / "dry_runs").glob("*/*"))) == 4  # a dry run removes nothing
    assert clean_dry_runs(root, now, 7, dry_run=False, limit=2) == 2
    assert clean_dry_runs(root, now, 7, dry_run=False, limit=2) == 1
    assert [p.name for p in (tmp_path / "dry_runs").glob("*/*")] == ["new.json"]
    assert not (tmp_path / "dry_runs" / "a").exists()  # the emptied folder goes too


def test_no_dry_run_folder_is_nothing_to_do(tmp_path):
    assert clean_dry_runs(storage_path(f"file://{tmp_path}"), datetime.now(UTC), 7, dry_run=False) == 0


def test_symlinks_under_the_dry_run_folder_are_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _files(elsewhere, {"keep/1.json": 30})
    _files(tmp_path / "artifacts", {"a/old.json": 30})
    folder = tmp_path / "artifacts" / "dry_runs"
    (folder / "linked").symlink_to(elsewhere / "dry_runs" / "keep", target_is_directory=True)
    (folder / "a" / "file_link.json").symlink_to(elsewhere / "dry_runs" / "keep" / "1.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    (folder / "empty_link").symlink_to(empty, target_is_directory=True)
    for root in (tmp_path / "artifacts", storage_path(f"file://{tmp_path / 'artifacts'}")):
        clean_dry_runs(root, datetime.now(UTC), 7, dry_run=False)
    assert (elsewhere / "dry_runs" / "keep" / "1.json").exists()  # neither link led to a deletion
    assert empty.is_dir() and (folder / "empty_link").is_symlink()
    assert not (folder / "a" / "old.json").exists()
