"""Scale test on a running ``make cluster``: 20 generated pipelines triggered at once plus a
12-month split backfill, while one Celery worker is SIGKILLed in the middle.

Proves, from outside the cluster (REST API, Airflow's task instance table, the receiver's file):
every relevant report is stored exactly once per pipeline (by idempotency key and by report id),
no run or task is left unfinished, no database deadlock, no pool ever ran more tasks than its slots,
no more pipelines wrote the receiver at once than its Connections' send slots (one each, fewer than
the three tasks the CHT pool lets run), and the killed worker's task was retried (on the other
worker: the killed one stays down until the end).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from standins import cluster
from standins.cluster_client import (
    WINDOW,
    AirflowApi,
    airflow_db,
    in_window,
    live_reports,
    pool_overlaps,
    received_by_path,
    receiver_stats,
    write_scale_pipelines,
)

pytestmark = pytest.mark.cluster
CHT_POOL = "cht_bridge__cht_local"
CHT_SLOTS = 3
RUN_TIMEOUT_S = 1500


def _running_on(paths: cluster.Paths, worker: str, tis: list[dict]) -> list[dict]:
    """The running task instances whose task process is one of ``worker``'s processes."""
    pid = cluster.running(paths, worker)
    assert pid, f"{worker} is not running"
    mine = {p.pid for p in cluster.descendants(pid)}
    return [ti for ti in tis if ti["state"] == "running" and ti.get("pid") in mine]


def test_twenty_pipelines_and_a_split_backfill_survive_a_killed_worker(running_cluster):
    paths = running_cluster
    env = cluster.airflow_environment(paths)
    sandbox = json.loads(paths.sandbox_env.read_text())
    forms = write_scale_pipelines(paths.pipelines, 20)
    from cht_bridge.pools import ensure_pools_cli

    ensure_pools_cli(env)  # as a deployment step does after adding pipelines (none new here: all read cht_local)
    api = AirflowApi()
    api.set_pool_slots(CHT_POOL, CHT_SLOTS)
    # Each write waits a little, so runs last long enough to be killed in the middle.
    cluster._private_json(paths.receiver_settings, {"delay": 0.02})
    names = sorted(n for n in forms if n != "scale_backfill")
    api.wait_for_dags([*names, "cht_bridge_backfill"], timeout=600)

    reports = live_reports(sandbox["couch_url"], tuple(sandbox["couch_admin"]))
    before = received_by_path(sandbox_dir := Path(sandbox["receiver_dir"]))
    assert not before, "the scale paths must be empty before the test: stop the cluster and remove .sandbox/cluster"

    since = datetime.now(UTC)
    for dag in [*names, "cht_bridge_backfill"]:
        api.unpause(dag)
    runs = {dag: api.trigger(dag) for dag in names}
    runs["cht_bridge_backfill"] = api.trigger(
        "cht_bridge_backfill", {"pipeline": "scale_backfill", "start": WINDOW[0], "end": WINDOW[1], "split_months": 1}
    )

    killed: list[dict] = []
    try:
        deadline = time.monotonic() + 600
        while not killed and time.monotonic() < deadline:  # the first task seen running on worker2
            for dag, run in runs.items():
                victims = _running_on(paths, "worker2", api.task_instances(dag, run))
                if victims:
                    time.sleep(2)  # in the middle of its run
                    assert cluster.kill_tree(paths, "worker2")
                    killed = [{**v, "dag_id": dag} for v in victims]
                    break
            time.sleep(1)
        assert killed, "no task ran on worker2 within 10 minutes"

        states = api.wait_for_runs(runs, RUN_TIMEOUT_S)
        assert set(states.values()) == {"success"}, {d: s for d, s in states.items() if s != "success"}
        assert not cluster.running(paths, "worker2")  # every retry ran on worker1
    finally:
        cluster._private_json(paths.receiver_settings, {"delay": 0.0})
        cluster.start_component(paths, "worker2", env)  # back to two workers for whatever comes next

    # The killed worker's tasks failed for want of a heartbeat and succeeded on their next try.
    for victim in killed:
        tis = api.task_instances(victim["dag_id"], runs[victim["dag_id"]])
        now = next(t for t in tis if t["task_id"] == victim["task_id"] and t["map_index"] == victim["map_index"])
        assert now["state"] == "success" and now["try_number"] > victim["try_number"], now

    # No task left behind in any of the runs.
    for dag, run in runs.items():
        unfinished = [t for t in api.task_instances(dag, run) if t["state"] not in ("success", "skipped")]
        assert unfinished == [], (dag, unfinished)

    # Exactly once at the receiver: one stored item per relevant report, under one key.
    delivered = received_by_path(sandbox_dir)
    for name in names:
        expected = {r["id"] for r in reports if r["form"] == forms[name]}
        got = delivered[f"/scale/{name[-2:]}"]
        assert got.items == got.keys == len(expected), (name, got.items, got.keys, len(expected))
        assert set(got.per_report) == expected and set(got.per_report.values()) == {1}, name
    expected = {r["id"] for r in reports if r["form"] == "assessment" and in_window(r)}
    got = delivered["/scale/backfill"]
    assert got.items == got.keys == len(expected) and set(got.per_report) == expected
    summary = api.call(
        "GET", f"/dags/cht_bridge_backfill/dagRuns/{runs['cht_bridge_backfill']}/taskInstances/summary/xcomEntries/"
        "return_value", params={"deserialize": "true"},
    )["value"]  # fmt: skip
    summary = summary if isinstance(summary, dict) else json.loads(summary)
    assert summary["parts"] == 12 and summary["relevant"] == len(expected)

    # Pools: never more task instances at once than slots (Airflow's task instance table, all tries).
    with airflow_db(paths) as db:
        peaks = pool_overlaps(db, since)
    slots = {name: api.pool(name)["slots"] for name in peaks if name.startswith("cht_bridge__")}
    assert peaks.get(CHT_POOL, 0) >= 2, peaks  # the pool was actually contended
    assert all(peaks[name] <= slots[name] for name in slots), (peaks, slots)

    # Destinations: the receiver never had more pipelines (paths) writing at once than the send slots of
    # its two Connections (one each), while the CHT pool ran three tasks at once.
    assert peaks[CHT_POOL] == CHT_SLOTS, peaks
    stats = receiver_stats(sandbox)
    assert 1 <= stats["max_paths_in_flight"] <= 2, stats["max_paths_in_flight"]

    # No database deadlock, in PostgreSQL's log or any component's.
    logs = [paths.pg / "server.log", *paths.logs.glob("*.log")]
    hits = [p.name for p in logs if p.exists() and "deadlock detected" in p.read_text(errors="replace").lower()]
    assert hits == []
