"""On a running ``make cluster``: a pipeline file on a NEW CHT Connection, dropped into the running
deployment, gets its pool from the ``cht_bridge_pools`` DAG (through the api-server's REST API, as
the user of the Connection ``cht_bridge_airflow_api``) and its run succeeds; before that, its task
waits unscheduled and the pools DAG says which pipeline waited on which pool.

And the example CSV reverse pipeline (a relative drop folder) runs on the Celery workers: the cluster
gives ``CHT_BRIDGE_CSV_ROOT`` (a ``file://`` URL), so the folder is not refused as one worker's disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from standins.cluster_client import AirflowApi, answer_open_questions, live_reports, received_by_path, scale_pipeline
from standins.demo import demo_reviewer

pytestmark = pytest.mark.cluster
NEW_CONN = "cht_local_two"
NEW_POOL = f"cht_bridge__{NEW_CONN}"
PIPELINE = "pools_new_conn"
POOLS_DAG = "cht_bridge_pools"
CSV_DAG = "contact_tracing_from_csv"


def _pool_exists(api: AirflowApi, name: str) -> bool:
    answer = api.session.get(f"{api.url}/api/v2/pools/{name}", timeout=30)
    assert answer.status_code in (200, 404), answer.status_code
    return answer.status_code == 200


def _copy_connection(api: AirflowApi, sandbox: dict, conn_id: str) -> None:
    """A new Connection in Airflow's database (read by tasks through the api-server), like cht_local."""
    given = json.loads(sandbox["environment"]["AIRFLOW_CONN_CHT_LOCAL"])
    body = {"connection_id": conn_id, **{k: given[k] for k in ("conn_type", "host", "login", "password", "port")
                                         if given.get(k) is not None}}  # fmt: skip
    if given.get("extra"):
        body["extra"] = json.dumps(given["extra"]) if isinstance(given["extra"], dict) else given["extra"]
    api.call("POST", "/connections", json=body)


def _pools_runs_since(api: AirflowApi, started: str) -> list[dict]:
    runs = api.call("GET", f"/dags/{POOLS_DAG}/dagRuns", params={"run_after_gte": started, "limit": 100})
    return runs["dag_runs"]


def _pools_result(api: AirflowApi, run_id: str) -> dict:
    """The ensure_pools task's XCom of one run of the pools DAG."""
    xcom = api.call(
        "GET", f"/dags/{POOLS_DAG}/dagRuns/{run_id}/taskInstances/ensure_pools/xcomEntries/return_value",
        params={"deserialize": "true"},
    )["value"]  # fmt: skip
    return xcom if isinstance(xcom, dict) else json.loads(xcom)


def test_a_pipeline_on_a_new_connection_gets_its_pool_and_runs(running_cluster):
    paths = running_cluster
    sandbox = json.loads(paths.sandbox_env.read_text())
    api = AirflowApi()
    api.wait_for_dags([POOLS_DAG], timeout=300)
    assert not _pool_exists(api, NEW_POOL), "run this on a fresh cluster (make cluster-clean cluster)"
    # Held while the pipeline is added, so the pool is missing when its run is created (as it would be
    # between two of the DAG's scheduled runs).
    api.call("PATCH", f"/dags/{POOLS_DAG}", json={"is_paused": True})
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    _copy_connection(api, sandbox, NEW_CONN)
    text = scale_pipeline(90, "pregnancy", "demo_receiver").replace("scale_90", PIPELINE)
    text = text.replace("conn_id: cht_local\n", f"conn_id: {NEW_CONN}\n").replace("/scale/90", "/pools/new")
    assert f"conn_id: {NEW_CONN}" in text
    (paths.pipelines / f"{PIPELINE}.yaml").write_text(text)
    api.wait_for_dags([PIPELINE], timeout=300)
    api.unpause(PIPELINE)
    run = api.trigger(PIPELINE)

    # Its task names a pool that does not exist: Airflow's scheduler leaves it unscheduled.
    time.sleep(20)
    (sync,) = api.task_instances(PIPELINE, run)
    assert sync["pool"] == NEW_POOL and sync["state"] in (None, "scheduled"), sync
    assert not _pool_exists(api, NEW_POOL)

    api.call("PATCH", f"/dags/{POOLS_DAG}", json={"is_paused": False})
    ours = api.trigger(POOLS_DAG)
    states = api.wait_for_runs({POOLS_DAG: ours}, 300)
    assert states == {POOLS_DAG: "success"}, states

    pool = api.pool(NEW_POOL)
    assert pool["slots"] == 2 and NEW_CONN in pool["description"]  # CHT_BRIDGE_POOL_SLOTS=2 (cluster.env)
    # Exactly one run created it (ours, or a scheduled one that came first), and said who waited on it.
    results = [_pools_result(api, r["dag_run_id"]) for r in _pools_runs_since(api, started) if r["state"] == "success"]
    creators = [x for x in results if NEW_POOL in x["created"]]
    assert len(creators) == 1, results
    assert creators[0]["created"] == {NEW_POOL: 2} and creators[0]["waited"] == {NEW_POOL: [PIPELINE]}
    assert all(x["needed"] == creators[0]["needed"] for x in results)

    states = api.wait_for_runs({PIPELINE: run}, 600)
    assert states == {PIPELINE: "success"}, states
    (sync,) = api.task_instances(PIPELINE, run)
    assert sync["pool"] == NEW_POOL and sync["state"] == "success"
    expected = {r["id"] for r in live_reports(sandbox["couch_url"], tuple(sandbox["couch_admin"]))
                if r["form"] == "pregnancy"}  # fmt: skip
    got = received_by_path(Path(sandbox["receiver_dir"]), prefix="/pools/")["/pools/new"]
    assert got.items == got.keys == len(expected) and set(got.per_report) == expected

    # An operator resizes the pool in the UI; the next run finds it, creates nothing and leaves its size.
    api.set_pool_slots(NEW_POOL, 3)
    assert api.pool(NEW_POOL)["slots"] == 3
    again = api.trigger(POOLS_DAG)
    assert api.wait_for_runs({POOLS_DAG: again}, 300) == {POOLS_DAG: "success"}
    assert api.pool(NEW_POOL)["slots"] == 3  # not set back to CHT_BRIDGE_POOL_SLOTS=2
    assert _pools_result(api, again)["created"] == {}


def test_the_example_csv_pipeline_runs_on_the_celery_workers(running_cluster):
    api = AirflowApi()
    api.wait_for_dags([CSV_DAG], timeout=300)
    api.unpause(CSV_DAG)  # a scheduled DAG: unpausing may start a scheduled run before ours (one at a time)
    ours = api.trigger(CSV_DAG)
    choose = demo_reviewer()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and api.run_state(CSV_DAG, ours) not in ("success", "failed"):
        answer_open_questions(api, CSV_DAG, choose)  # as a person in the UI would
        time.sleep(3)
    runs = [r["dag_run_id"] for r in api.call("GET", f"/dags/{CSV_DAG}/dagRuns", params={"limit": 100})["dag_runs"]]
    assert ours in runs and {r: api.run_state(CSV_DAG, r) for r in runs} == dict.fromkeys(runs, "success")
    read = 0
    for run in runs:
        tis = {t["task_id"]: t["state"] for t in api.task_instances(CSV_DAG, run) if t["map_index"] in (-1, None)}
        assert tis["receive"] == tis["match"] == tis["write_decided"] == "success", (run, tis)
        counts = api.call(
            "GET", f"/dags/{CSV_DAG}/dagRuns/{run}/taskInstances/receive/xcomEntries/return_value",
            params={"deserialize": "true"},
        )["value"]  # fmt: skip
        read += (counts if isinstance(counts, dict) else json.loads(counts))["read"]
    assert read == 21  # every row of include/lists/contact_tracing/ once, read through the file:// root
