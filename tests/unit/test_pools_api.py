"""The cht_bridge_pools task's planning (no network): which pools the loaded pipeline files need, which
pipelines wait on a missing one, and the plain failure when the api-server's Connection is not set."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from cht_bridge.errors import ConfigError
from cht_bridge.pools import missing, pipelines_in_pools, roles_of, uses, wanted

ROOT = Path(__file__).resolve().parents[2]


def _on(text: str, conn: str, name: str) -> str:
    return text.replace("conn_id: cht_local\n", f"conn_id: {conn}\n", 1).replace("name: referrals\n", f"name: {name}\n")


def test_a_pipeline_on_a_new_connection_needs_a_new_pool_and_is_named_as_waiting_on_it(tmp_path):
    forward, reverse = tmp_path / "pipelines", tmp_path / "reverse"
    forward.mkdir()
    reverse.mkdir()
    referrals = (ROOT / "include" / "pipelines" / "referrals.yaml").read_text()
    assert "conn_id: cht_local\n" in referrals and "name: referrals\n" in referrals
    (forward / "referrals.yaml").write_text(referrals)
    (forward / "north.yaml").write_text(_on(referrals, "cht_north", "north_referrals"))
    (forward / "north2.yaml").write_text(_on(referrals, "cht_north", "north_more"))
    (forward / "broken.yaml").write_text("name: broken\ncht: {conn_id: cht_broken}\n")  # fails its checks
    ltfu = ROOT / "include" / "reverse" / "ltfu_fhir.yaml"
    (reverse / ltfu.name).write_text(ltfu.read_text())

    found = uses(forward, reverse)
    want = wanted(roles_of(found), {"CHT_BRIDGE_POOL_SLOTS": "3", "CHT_BRIDGE_POOL_SLOTS__CHT_NORTH": "1"})
    assert set(want) == {"cht_bridge__cht_local", "cht_bridge__cht_north", "cht_bridge__emr_fhir",
                         "cht_bridge__cht_api_local"}  # fmt: skip
    assert want["cht_bridge__cht_north"] == (1, "CHT Bridge: tasks using the CHT Connection cht_north")
    absent = missing(
        want, ["default_pool", "cht_bridge__cht_local", "cht_bridge__emr_fhir", "cht_bridge__cht_api_local"]
    )
    assert absent == {"cht_bridge__cht_north": want["cht_bridge__cht_north"]}
    waiting = pipelines_in_pools(found)
    assert waiting["cht_bridge__cht_north"] == ["north_more", "north_referrals"]
    assert waiting["cht_bridge__emr_fhir"] == ["ltfu_from_emr"]  # its receive reads the EMR
    assert "cht_bridge__demo_receiver" not in waiting  # a destination's sends take send slots, not a pool
    assert "cht_bridge__cht_broken" not in want  # an invalid file's DAG fails with its problems; no pool


def test_without_its_connection_the_task_fails_once_naming_it(monkeypatch):
    from cht_bridge.hooks.connection import airflow_api_session
    from cht_bridge.operators.pools import EnsurePoolsOperator

    monkeypatch.delenv("AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API", raising=False)
    with pytest.raises(
        ConfigError, match="^Airflow connection 'cht_bridge_airflow_api' is not set: it names Airflow's api-server"
    ):
        airflow_api_session("cht_bridge_airflow_api")
    task = EnsurePoolsOperator(
        task_id="ensure_pools", pipelines_folder=str(ROOT / "include" / "pipelines"),
        reverse_folder=str(ROOT / "include" / "reverse"), conn_id="cht_bridge_airflow_api",
    )  # fmt: skip
    with pytest.raises(AirflowFailException, match="^Airflow connection 'cht_bridge_airflow_api' is not set"):
        task.execute({})


def test_a_connection_without_a_password_is_refused_before_any_request(monkeypatch):
    from cht_bridge.hooks.connection import airflow_api_session

    monkeypatch.setenv(
        "AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API", '{"conn_type": "http", "host": "http://127.0.0.1:9", "login": "u"}'
    )
    with pytest.raises(ConfigError, match="needs an http\\(s\\) host, a login and a password"):
        airflow_api_session("cht_bridge_airflow_api")
