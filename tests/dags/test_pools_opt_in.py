"""Per-Connection pools are opt-in at parse time: a task naming a missing pool is never scheduled
(cht_bridge.pools), so unless the deployment says it created them, every task runs in default_pool."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


@pytest.mark.parametrize("value", [None, "false"])
def test_off_by_default_every_task_runs_in_default_pool(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CHT_BRIDGE_CONNECTION_POOLS", raising=False)
    else:
        monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", value)
    bag = _bag()
    assert bag.import_errors == {}
    pools = {task.pool for dag in bag.dags.values() for task in dag.tasks}
    assert pools == {"default_pool"}


def test_switched_on_each_task_names_its_connections_pool(monkeypatch):
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "true")
    bag = _bag()
    assert bag.import_errors == {}
    dags = bag.dags
    assert dags["referrals"].get_task("sync").pool == "cht_bridge__cht_local"
    assert dags["cht_bridge_backfill"].get_task("backfill__cht_local").pool == "cht_bridge__cht_local"
    aggregate = next(d for d in dags.values() if "aggregate" in d.task_ids)
    assert aggregate.get_task("aggregate").pool == "cht_bridge__cht_local"
    assert dags["ltfu_from_emr"].get_task("receive").pool == "cht_bridge__emr_fhir"
    assert dags["ltfu_from_emr"].get_task("write_decided").pool == "cht_bridge__cht_api_local"
    # What cannot know its Connection when parsed (the replay's pipeline is a Param) stays in default_pool.
    assert dags["cht_bridge_replay"].get_task("replay").pool == "default_pool"


def test_a_setting_that_is_neither_true_nor_false_is_an_import_error_naming_it(monkeypatch):
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "maybe")
    errors = _bag().import_errors
    assert errors and all(
        "CHT_BRIDGE_CONNECTION_POOLS: 'maybe' is neither true nor false" in e for e in errors.values()
    )


def test_the_pools_dag_exists_only_when_pools_are_on_and_runs_unpaused_in_default_pool(monkeypatch):
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "true")
    dag = _bag().dags["cht_bridge_pools"]
    (task,) = dag.tasks
    assert task.pool == "default_pool"  # it must run while the pools it creates are missing
    assert task.conn_id == "cht_bridge_airflow_api"
    assert dag.is_paused_upon_creation is False  # new DAGs start paused in cluster.env; this one must run
    assert dag.schedule == "*/5 * * * *" and dag.max_active_runs == 1
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "false")
    assert "cht_bridge_pools" not in _bag().dags
