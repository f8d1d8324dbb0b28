"""Pools per Connection: names and sizes from the pipeline files alone, created only when missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cht_bridge.dag_factory import build_dags, build_reverse_dags
from cht_bridge.errors import SettingError
from cht_bridge.pools import connections_of, enabled, missing, pool_name, pool_slots, task_pool, wanted

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_reading_cht_runs_in_its_cht_connections_pool(monkeypatch):
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "true")
    dags = build_dags(ROOT / "include" / "pipelines")
    assert dags["referrals"].get_task("sync").pool == pool_name("cht_local") == "cht_bridge__cht_local"
    backfill = dags["cht_bridge_backfill"]
    assert backfill.get_task("backfill__cht_local").pool == "cht_bridge__cht_local"
    reverse = build_reverse_dags(ROOT / "include" / "reverse")["ltfu_from_emr"]
    assert reverse.get_task("receive").pool == "cht_bridge__emr_fhir"  # reads only the EMR
    assert {reverse.get_task(t).pool for t in ("match", "write_decided", "write_reviewed")} == {
        "cht_bridge__cht_api_local"
    }


def test_sizes_come_from_the_connection_variable_then_the_default_variable():
    env = {"CHT_BRIDGE_POOL_SLOTS": "3", "CHT_BRIDGE_POOL_SLOTS__CHT_LOCAL": "1"}
    assert pool_slots("cht_local", env) == 1 and pool_slots("demo_receiver", env) == 3 and pool_slots("x", {}) == 4
    with pytest.raises(SettingError, match="CHT_BRIDGE_POOL_SLOTS: 'many'"):
        pool_slots("x", {"CHT_BRIDGE_POOL_SLOTS": "many"})


def test_only_missing_pools_are_created_and_an_existing_one_keeps_its_size():
    conns = connections_of(ROOT / "include" / "pipelines", ROOT / "include" / "reverse")
    assert conns["cht_local"] == {"CHT"} and conns["demo_receiver"] == {"destination"}
    assert conns["emr_fhir"] == {"source", "destination"}  # the LTFU list's server also receives referrals
    want = wanted(conns, {"CHT_BRIDGE_POOL_SLOTS": "2"})
    assert want["cht_bridge__cht_local"][0] == 2
    assert want["cht_bridge__emr_fhir"][1] == "CHT Bridge: tasks using the destination and source Connection emr_fhir"
    assert "cht_bridge__demo_receiver" not in want  # only a destination: limited by its send slots, not a pool
    assert set(missing(want, ["default_pool", "cht_bridge__cht_local"])) == set(want) - {"cht_bridge__cht_local"}


def test_the_setting_is_read_strictly_and_off_names_default_pool():
    assert enabled({}) is False and enabled({"CHT_BRIDGE_CONNECTION_POOLS": "True"}) is True
    assert task_pool("cht_local", {}) == "default_pool"
    assert task_pool("cht_local", {"CHT_BRIDGE_CONNECTION_POOLS": "1"}) == "cht_bridge__cht_local"
    with pytest.raises(SettingError, match="CHT_BRIDGE_CONNECTION_POOLS: 'sometimes' is neither true nor false"):
        enabled({"CHT_BRIDGE_CONNECTION_POOLS": "sometimes"})


def test_airflow_is_run_by_the_interpreter_not_a_script_beside_it(tmp_path, monkeypatch):
    """As in the official image (``airflow`` in ~/.local/bin): the interpreter's folder has no ``airflow``."""
    import site
    import sys

    from cht_bridge.pools import _airflow

    alone = tmp_path / "bin" / "python3"
    alone.parent.mkdir()
    alone.symlink_to(Path(sys.executable).resolve())
    assert not (alone.parent / "airflow").exists()
    monkeypatch.setattr(sys, "executable", str(alone))
    env = {"PYTHONPATH": os.pathsep.join(site.getsitepackages()), "AIRFLOW_HOME": str(tmp_path), "PATH": ""}
    assert _airflow(env, "version").strip()[:1].isdigit()
