"""The cht_bridge_pools task: its planning (no network: which pools the loaded pipeline files need, which
pipelines wait on a missing one), the plain failure when the api-server's Connection is not set, and the
task against a stand-in that follows Airflow 3.3's pools and login contract (tests/fixtures/
airflow_pools_server.py; the real api-server is exercised by tests/cluster/test_new_connection_pool.py)."""

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


@pytest.fixture
def api_server(monkeypatch):
    from tests.fixtures.airflow_pools_server import AirflowPoolsServer

    with AirflowPoolsServer({"cht_bridge_pools": ("s3cret-pw", "op"), "reader": ("r3ad-pw", "user")}) as server:
        yield server


def _ensure(monkeypatch, server, login="cht_bridge_pools", password="s3cret-pw", path=""):
    import json

    from cht_bridge.operators.pools import EnsurePoolsOperator

    conn = {"conn_type": "http", "host": server.url + path, "login": login, "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API", json.dumps(conn))
    monkeypatch.setenv("CHT_BRIDGE_POOL_SLOTS", "2")
    task = EnsurePoolsOperator(
        task_id="ensure_pools", pipelines_folder=str(ROOT / "include" / "pipelines"),
        reverse_folder=str(ROOT / "include" / "reverse"), conn_id="cht_bridge_airflow_api",
    )  # fmt: skip
    return task.execute({})


def test_missing_pools_are_created_through_the_api_and_an_existing_one_keeps_its_size(monkeypatch, api_server, capsys):
    """Against a stand-in that follows Airflow 3.3's contract (tests/fixtures/airflow_pools_server.py)."""
    import json

    api_server.pools["cht_bridge__cht_local"] = {"name": "cht_bridge__cht_local", "slots": 7}  # set in the UI
    result = _ensure(monkeypatch, api_server)
    log = capsys.readouterr().out  # the task's log (Airflow's structlog writes to stdout here)
    assert result["created"] == {
        "cht_bridge__cht_api_local": 2,
        "cht_bridge__emr_fhir": 2,
        "cht_bridge__rapidpro_local": 2,
    }
    assert result["needed"] == 4 and set(result["waited"]) == set(result["created"])
    assert result["waited"]["cht_bridge__emr_fhir"] == ["ltfu_from_emr"]
    assert api_server.pools["cht_bridge__cht_local"]["slots"] == 7  # never resized
    posts = [json.loads(r["body"]) for r in api_server.seen if r["method"] == "POST" and r["path"] == "/api/v2/pools"]
    assert [set(p) for p in posts] == [{"name", "slots", "description", "include_deferred"}] * 3
    assert not [r for r in api_server.seen if r["method"] == "PATCH"]
    assert "pool cht_bridge__emr_fhir is missing: the tasks of 1 pipeline(s) wait on it (ltfu_from_emr)" in log
    assert "4 pools needed, 1 existed, 3 created" in log
    assert "s3cret-pw" not in log and "jwt" not in log
    again = _ensure(monkeypatch, api_server)  # idempotent: nothing left to create
    assert again == {"needed": 4, "created": {}, "waited": {}}
    logins = [r for r in api_server.seen if r["path"] == "/auth/token"]
    assert len(logins) == 2  # one login a run


def test_a_pool_made_meanwhile_is_left_as_it_is(monkeypatch, api_server):
    api_server.pools["cht_bridge__rapidpro_local"] = {"name": "cht_bridge__rapidpro_local", "slots": 9}
    api_server.made_meanwhile.add("cht_bridge__rapidpro_local")  # missing when asked, there when created (409)
    result = _ensure(monkeypatch, api_server)
    assert "cht_bridge__rapidpro_local" not in result["created"] and "cht_bridge__rapidpro_local" in result["waited"]
    assert api_server.pools["cht_bridge__rapidpro_local"]["slots"] == 9


def test_a_user_who_may_not_write_pools_fails_once_naming_the_connection(monkeypatch, api_server):
    with pytest.raises(AirflowFailException, match="'cht_bridge_airflow_api' names a user that may not create pools"):
        _ensure(monkeypatch, api_server, "reader", "r3ad-pw")
    with pytest.raises(
        AirflowFailException, match="refused the credentials of Airflow connection 'cht_bridge_airflow_api'"
    ):
        _ensure(monkeypatch, api_server, "cht_bridge_pools", "wrong")


def test_behind_a_proxy_path_the_login_goes_under_that_path_like_the_api_calls(monkeypatch):
    from tests.fixtures.airflow_pools_server import AirflowPoolsServer

    with AirflowPoolsServer({"cht_bridge_pools": ("s3cret-pw", "op")}, prefix="/airflow") as server:
        result = _ensure(monkeypatch, server, path="/airflow")  # the host: http://127.0.0.1:<port>/airflow
    assert len(result["created"]) == 4
    assert [r["path"] for r in server.seen if r["method"] == "POST"][0] == "/airflow/auth/token"
    assert all(r["path"].startswith("/airflow/") for r in server.seen)


def test_a_login_sent_to_the_wrong_path_is_not_called_a_wrong_password(monkeypatch):
    from tests.fixtures.airflow_pools_server import AirflowPoolsServer

    server = AirflowPoolsServer({"cht_bridge_pools": ("s3cret-pw", "op")}, prefix="/airflow")
    with server, pytest.raises(AirflowFailException) as caught:
        _ensure(monkeypatch, server, path="/elsewhere")
    message = str(caught.value)
    assert "(HTTP 404)" in message and "check the host, port and path" in message
    assert "login and password" not in message and "s3cret-pw" not in message
    assert [r["path"] for r in server.seen] == ["/elsewhere/auth/token"]


def test_a_login_answered_without_a_token_fails_once_asking_whether_the_host_is_the_api_server(monkeypatch):
    from tests.fixtures.airflow_pools_server import AirflowPoolsServer

    server = AirflowPoolsServer({"cht_bridge_pools": ("s3cret-pw", "op")}, html_login=True)
    with server, pytest.raises(AirflowFailException) as caught:
        _ensure(monkeypatch, server)
    message = str(caught.value)
    assert "Airflow connection 'cht_bridge_airflow_api'" in message and "is the host Airflow's api-server?" in message
    assert "s3cret-pw" not in message
    assert [r["path"] for r in server.seen] == ["/auth/token"]  # once: no retries, no pools asked


def test_a_create_whose_answer_was_lost_is_not_reported_as_someone_elses(monkeypatch, api_server, capsys):
    api_server.answer_lost.add("cht_bridge__emr_fhir")  # committed, answered 503; the repeat meets a 409
    result = _ensure(monkeypatch, api_server)
    log = capsys.readouterr().out
    posts = [r for r in api_server.seen if r["method"] == "POST" and r["path"] == "/api/v2/pools"]
    assert sum('"cht_bridge__emr_fhir"' in r["body"] for r in posts) == 2  # the Reader repeated it
    assert api_server.pools["cht_bridge__emr_fhir"]["slots"] == 2
    assert "cht_bridge__emr_fhir" not in result["created"]
    assert "someone else" not in log
    assert "1 already existed when created (made by a repeat of this run's own request, or by another writer)" in log
