"""Under a distributed executor the SQLite default on a worker's disk is refused, with the fix in the message."""

from __future__ import annotations

import pytest

from cht_bridge.errors import ConfigError
from cht_bridge.hooks.state import LocalStateRefused, distributed_executor, open_state_store


@pytest.mark.parametrize(
    ("executor", "refused"),
    [
        ("CeleryExecutor", "CeleryExecutor"),
        ("airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor", "KubernetesExecutor"),
        ("LocalExecutor,CeleryExecutor", "CeleryExecutor"),
        ("LocalExecutor", None),
    ],
)
def test_which_executors_are_distributed(monkeypatch, executor, refused):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    assert distributed_executor() == refused


def test_a_celery_worker_refuses_the_sqlite_default(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.delenv("CHT_BRIDGE_STATE_CONN_ID", raising=False)
    with pytest.raises(LocalStateRefused) as caught:
        open_state_store(None)
    assert isinstance(caught.value, ConfigError)  # fails the task without retries
    message = str(caught.value)
    assert "CeleryExecutor" in message and "CHT_BRIDGE_STATE_CONN_ID" in message and "state: {conn_id" in message
    assert not (tmp_path / "cht_bridge" / "state.db").exists()


def test_a_local_executor_keeps_the_sqlite_default(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    monkeypatch.delenv("CHT_BRIDGE_STATE_CONN_ID", raising=False)
    store = open_state_store(None)
    assert store.engine.dialect.name == "sqlite"
