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
