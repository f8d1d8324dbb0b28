"""Under a distributed executor a CSV drop folder on one worker's disk is refused; a URL (shared storage) is not."""

from __future__ import annotations

import pytest

from cht_bridge.errors import ConfigError
from cht_bridge.hooks.source import LocalFolderRefused, open_source
from cht_bridge.reverse.model import SourceConfig


def test_a_celery_worker_refuses_a_local_csv_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    for folder in (str(tmp_path), "include/lists"):  # absolute, and relative to the repository
        with pytest.raises(LocalFolderRefused) as caught:
            open_source(SourceConfig(type="csv", folder=folder))
        assert isinstance(caught.value, ConfigError)  # fails the task without retries
        message = str(caught.value)
        assert folder in message and "CeleryExecutor" in message and "file:///shared/" in message


def test_a_url_is_shared_storage_and_a_local_executor_keeps_the_path(monkeypatch, tmp_path):
    (tmp_path / "a.csv").write_text("id,name\n1,x\n")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    shared = open_source(SourceConfig(type="csv", folder=f"file://{tmp_path}"))  # a deliberate shared volume
    assert [len(page.records) for page in shared.pages(None)] == [1]
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    local = open_source(SourceConfig(type="csv", folder=str(tmp_path)))
    assert [len(page.records) for page in local.pages(None)] == [1]


def test_a_relative_folder_is_read_under_the_shared_root_and_an_absolute_path_is_still_refused(monkeypatch, tmp_path):
    (tmp_path / "lists" / "north").mkdir(parents=True)
    (tmp_path / "lists" / "north" / "a.csv").write_text("id,name\n1,x\n2,y\n")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("CHT_BRIDGE_CSV_ROOT", f"file://{tmp_path}/")
    shared = open_source(SourceConfig(type="csv", folder="lists/north"))
    assert str(shared.folder) == f"file://{tmp_path}/lists/north"
    assert [len(page.records) for page in shared.pages(None)] == [2]
    with pytest.raises(LocalFolderRefused):  # the setting roots relative folders only: a path stays one disk's
        open_source(SourceConfig(type="csv", folder=str(tmp_path / "lists" / "north")))
    monkeypatch.delenv("CHT_BRIDGE_CSV_ROOT")
    with pytest.raises(LocalFolderRefused, match="CHT_BRIDGE_CSV_ROOT"):  # the message names the way out
        open_source(SourceConfig(type="csv", folder="lists/north"))


def test_a_root_that_is_not_a_url_is_refused_naming_the_setting(monkeypatch, tmp_path):
    from cht_bridge.errors import SettingError

    monkeypatch.setenv("CHT_BRIDGE_CSV_ROOT", str(tmp_path))
    with pytest.raises(SettingError, match="CHT_BRIDGE_CSV_ROOT: .* is not a URL every worker reaches"):
        open_source(SourceConfig(type="csv", folder="lists/north"))


def test_a_relative_folder_cannot_climb_out_of_the_shared_root(monkeypatch, tmp_path):
    """Checked again where the root is joined (the loader refuses it first): ``..`` would read, and the
    housekeeping delete, files outside $CHT_BRIDGE_CSV_ROOT."""
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.csv").write_text("id,name\n1,x\n")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("CHT_BRIDGE_CSV_ROOT", f"file://{tmp_path}/root/")
    with pytest.raises(ConfigError, match="source.folder") as caught:
        open_source(SourceConfig(type="csv", folder="../outside"))
    assert "'..'" in str(caught.value)
