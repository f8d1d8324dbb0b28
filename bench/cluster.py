"""``make bench-cluster``: what scale-out buys on a running ``make cluster``.

1. The 20 generated pipelines (``standins.cluster_client.scale_pipeline``, each reading the whole
   sandbox changes feed), triggered at once: wall time with one Celery worker (worker2 stopped)
   and with two. The CHT pool is widened for the measure so that workers, not the pool, bound it.
2. A backfill of ``--docs`` documents as one task (a pipeline DAG with Params start/end) against
   ``cht_bridge_backfill`` split into calendar months over both workers. ``--server couch``: a
   database of their own, ``medic_bench_<docs>``, in the sandbox CouchDB (pouchdb-server: its view
   builds at ~300 documents/s, so up to ~50k); ``--server sqlite``: the generated documents loaded
   into SQLite and served with CouchDB's answers over HTTP by ``bench.local_cht_server`` (a million
   loads in ~4 minutes), Connection ``bench_cht``.

Both send to the sandbox receiver through Connection ``bench_receiver``, whose send slots the
cluster sets wide (``standins/cluster.py``): workers, not the destination limit, bound the measure.

Each round uses pipelines of new names (a fresh checkpoint and ledger, its own receiver path), so
rounds do not help each other. Wall time is from the first trigger to the last run's end, as
Airflow recorded it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import time
from datetime import datetime
from typing import Any

import requests

from standins import cluster
from standins.cluster_client import FORMS, WINDOW, AirflowApi, scale_pipeline
from standins.couchdb import set_security
from standins.seed import seed

CHT_POOL = "cht_bridge__cht_local"
BENCH_CHT, BENCH_RECEIVER = "bench_cht", "bench_receiver"


def _write(paths: cluster.Paths, name: str, text: str) -> None:
    (paths.pipelines / f"{name}.yaml").write_text(text)


def _pipelines(paths: cluster.Paths, round_name: str, count: int) -> list[str]:
    names = []
    for n in range(1, count + 1):
        name = f"bench_{round_name}_{n:02d}"
        text = scale_pipeline(n, FORMS[n % len(FORMS)], BENCH_RECEIVER).replace(f"scale_{n:02d}", name)
        _write(paths, name, text.replace(f"/scale/{n:02d}", f"/bench/{round_name}/{n:02d}"))
        names.append(name)
    return names


def _wall(api: AirflowApi, runs: dict[str, str], timeout: float) -> float:
    states = api.wait_for_runs(runs, timeout)
    failed = {d: s for d, s in states.items() if s != "success"}
    if failed:
        raise RuntimeError(f"runs did not succeed: {failed}")
    info = [api.call("GET", f"/dags/{d}/dagRuns/{r}") for d, r in runs.items()]
    start = min(datetime.fromisoformat(i["start_date"]) for i in info)
    end = max(datetime.fromisoformat(i["end_date"]) for i in info)
    return (end - start).total_seconds()


def _trigger_all(api: AirflowApi, names: list[str], conf: dict | None = None) -> dict[str, str]:
    for name in names:
        api.unpause(name)
    return {name: api.trigger(name, conf) for name in names}


def _wait_worker(paths: cluster.Paths, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    log = paths.logs / f"{name}.log"
    mark = log.stat().st_size if log.exists() else 0
    while time.monotonic() < deadline:
        if log.exists() and " ready." in log.read_text(errors="replace")[mark:]:
            return
        time.sleep(1)
    raise RuntimeError(f"{name} did not come back")


def pipelines_round(api: AirflowApi, paths: cluster.Paths, label: str, count: int) -> float:
    names = _pipelines(paths, label, count)
    api.wait_for_dags(names, timeout=600)
    return _wall(api, _trigger_all(api, names), 3600)


def _connection(api: AirflowApi, conn_id: str, url: str, login: tuple[str, str]) -> None:
    """Create (or replace) an http Connection in Airflow's database, read by every worker."""
    body = {"connection_id": conn_id, "conn_type": "http", "host": url, "login": login[0], "password": login[1]}
    try:
        api.call("POST", "/connections", json=body)
    except RuntimeError:
        api.call("PATCH", f"/connections/{conn_id}", json=body)


def bench_receiver(api: AirflowApi, paths: cluster.Paths) -> None:
    """``bench_receiver``: the sandbox receiver under a Connection of the benchmark's own."""
    sandbox = json.loads(paths.sandbox_env.read_text())
    conn = json.loads(sandbox["environment"]["AIRFLOW_CONN_DEMO_RECEIVER"])
    _connection(api, BENCH_RECEIVER, conn["host"], (conn["login"], conn["password"]))


def sqlite_cht(api: AirflowApi, paths: cluster.Paths, docs: int) -> tuple[Any, int]:
    """The generated ``docs`` in SQLite (loaded once, kept), served over HTTP as ``bench_cht``."""
    from bench.local_cht import load
    from bench.local_cht_server import LocalChtServer
    from standins.generate import generate

    file = paths.home / "bench" / f"cht_{docs}.sqlite"
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        loaded = load(file.with_suffix(".tmp"), generate(docs))
        file.with_suffix(".tmp").rename(file)
        print(f"loaded {loaded['docs']} documents ({loaded['reports']} reports) into SQLite in "
              f"{time.monotonic() - started:.0f}s", flush=True)  # fmt: skip
    login = ("bench", secrets.token_hex(16))
    server = LocalChtServer(file, login).start()
    _connection(api, BENCH_CHT, server.url, login)
    with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as db:
        reports = db.execute("SELECT count(*) FROM reports").fetchone()[0]
    return server, reports


def backfill_rounds(
    api: AirflowApi, paths: cluster.Paths, docs: int, server: str = "couch"
) -> tuple[float, float, int]:
    if server == "sqlite":
        local, reports = sqlite_cht(api, paths, docs)
        try:
            return _backfill_rounds(api, paths, BENCH_CHT, "medic", reports)
        finally:
            local.stop()
    bench_db = f"medic_bench_{docs}"
    sandbox = json.loads(paths.sandbox_env.read_text())
    admin = tuple(sandbox["couch_admin"])
    existing = requests.get(f"{sandbox['couch_url']}/{bench_db}", auth=admin, timeout=30)
    if existing.status_code == 404 or existing.json().get("doc_count", 0) < docs * 0.9:
        started = time.monotonic()
        seed(sandbox["couch_url"], admin, docs, db=bench_db)
        print(f"seeded {docs} documents into {bench_db} in {time.monotonic() - started:.0f}s", flush=True)
    set_security(sandbox["couch_url"], admin, bench_db, member_roles=["mm-online"])
    # Build every view index before timing (CouchDB builds one on its first query: minutes at 200k docs).
    design = requests.get(f"{sandbox['couch_url']}/{bench_db}/_design/medic-client", auth=admin, timeout=60).json()
    for view in design.get("views", {}):
        requests.get(
            f"{sandbox['couch_url']}/{bench_db}/_design/medic-client/_view/{view}",
            params={"limit": 0}, auth=admin, timeout=3600,
        )  # fmt: skip
    reports = requests.get(
        f"{sandbox['couch_url']}/{bench_db}/_design/medic-client/_view/reports_by_date",
        params={"limit": 0}, auth=admin, timeout=600,
    ).json().get("total_rows", 0)  # fmt: skip
    return _backfill_rounds(api, paths, "cht_local", bench_db, reports)


def _backfill_rounds(
    api: AirflowApi, paths: cluster.Paths, conn_id: str, db: str, reports: int
) -> tuple[float, float, int]:
    stamp = int(time.time())
    single, split = f"bench_single_{stamp}", f"bench_split_{stamp}"
    for name in (single, split):
        text = scale_pipeline(1, "assessment", BENCH_RECEIVER).replace("scale_01", name)
        text = text.replace("relevant_to: \"doc.type === 'data_record' && doc.form === 'assessment'\"",
                            "relevant_to: \"doc.type === 'data_record' && !!doc.form\"")  # fmt: skip
        text = text.replace("  conn_id: cht_local\n", f"  conn_id: {conn_id}\n  db: {db}\n", 1)
        text = text.replace("mode: batch", "mode: batch").replace("/scale/01", f"/bench/{name}")
        _write(paths, name, text.replace("batch_size: 300", "batch_size: 1000"))
    api.wait_for_dags([single, split], timeout=600)
    if conn_id != "cht_local":  # its pool, created as a deployment would, then widened like the CHT pool
        from cht_bridge.pools import ensure_pools_cli, pool_name

        ensure_pools_cli(cluster.airflow_environment(paths))
        api.set_pool_slots(pool_name(conn_id), 8)
    from cht_bridge.operators.backfill import task_id_for

    deadline = time.monotonic() + 600  # the backfill DAG gains a mapped task per CHT Connection when re-parsed
    while task_id_for(conn_id) not in {
        t["task_id"] for t in api.call("GET", "/dags/cht_bridge_backfill/tasks")["tasks"]
    }:
        if time.monotonic() > deadline:
            raise TimeoutError(f"cht_bridge_backfill has no task {task_id_for(conn_id)} after 600 s")
        time.sleep(3)
    window = {"start": WINDOW[0], "end": WINDOW[1]}
    one = _wall(api, _trigger_all(api, [single], window), 7200)
    api.unpause("cht_bridge_backfill")
    run = api.trigger("cht_bridge_backfill", {"pipeline": split, **window, "split_months": 1})
    many = _wall(api, {"cht_bridge_backfill": run}, 7200)
    return one, many, reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="documents of the backfill database")
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--skip", choices=["pipelines", "backfill"], action="append", default=[])
    parser.add_argument("--server", choices=["couch", "sqlite"], default="couch", help="where the backfill reads CHT")
    args = parser.parse_args(argv)
    paths = cluster.Paths()
    api = AirflowApi()
    slots = api.pool(CHT_POOL)["slots"]
    api.set_pool_slots(CHT_POOL, 8)  # workers bound the measure, not the pool
    env = cluster.airflow_environment(paths)
    bench_receiver(api, paths)
    try:
        if "pipelines" not in args.skip:
            cluster.stop_group(paths, "worker2")
            stamp = int(time.time()) % 100000
            one = pipelines_round(api, paths, f"w1_{stamp}", args.pipelines)
            cluster.start_component(paths, "worker2", env)
            _wait_worker(paths, "worker2")
            two = pipelines_round(api, paths, f"w2_{stamp}", args.pipelines)
            print(f"{args.pipelines} pipelines at once: one worker {one:.0f}s, two workers {two:.0f}s "
                  f"(speed-up {one / two:.2f}x)", flush=True)  # fmt: skip
        if "backfill" not in args.skip:
            single, split, reports = backfill_rounds(api, paths, args.docs, args.server)
            print(f"backfill of {args.docs} documents ({reports} reports, 12 months): one task {single:.0f}s, "
                  f"split in months over two workers {split:.0f}s (speed-up {single / split:.2f}x)", flush=True)  # fmt: skip
    finally:
        if not cluster.running(paths, "worker2"):
            cluster.start_component(paths, "worker2", env)
        api.set_pool_slots(CHT_POOL, slots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
