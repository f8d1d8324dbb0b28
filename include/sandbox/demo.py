"""``make demo``: every example pipeline as a real Airflow DAG run on the local CHT sandbox.

It starts the sandbox (see ``stack.py``), runs each DAG generated from ``include/pipelines`` with
``dag.test()`` in a child process whose Airflow log goes to ``.sandbox/demo.log``, then prints a
summary per pipeline and where to look at what was delivered. Run it again: the second run reads
only what changed since the first, and sends nothing new.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from include.sandbox import stack as sandbox

COLUMNS = ("read", "relevant", "sent", "unchanged", "failed", "dead_lettered")


def run_dags(out: Path) -> int:
    """Child process: run every pipeline DAG once and write their XCom summaries to ``out``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from cht_bridge.dag_factory import REPLAY_DAG_ID

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    results = {}
    for dag_id in sorted(set(bag.dag_ids) - {REPLAY_DAG_ID}):  # replay is for a person to trigger
        run = bag.get_dag(dag_id).test()
        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids="sync", key="return_value")
            ).all()
        results[dag_id] = {"state": str(run.state), "summary": rows[0].value if rows else None}
    out.write_text(json.dumps(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=5000, help="size of the synthetic CHT on first start")
    parser.add_argument("--home", type=Path, default=sandbox.HOME)
    parser.add_argument("--run-dags", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_dags:
        return run_dags(args.run_dags)

    print(f"Starting the local CHT sandbox in {args.home} ...", flush=True)
    # Stop the sandbox's servers on SIGTERM too, not only on Ctrl-C or a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = sandbox.start(args.home, docs=args.docs)
    try:
        if stack.seeded:
            s = stack.seeded
            print(
                f"Seeded a synthetic CHT: {s['docs']} docs ({s['contacts']} contacts, {s['reports']} reports, "
                f"{s['edited']} edited, {s['deleted']} deleted)"
            )
        print(f"CHT (CouchDB protocol) at {stack.couch.url}; receiver at {stack.receiver.url}")
        env = {**os.environ, **stack.environment()}
        log_path = args.home / "demo.log"
        result_path = args.home / "demo-results.json"
        with open(log_path, "ab") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=log, stderr=log, check=True
            )
            print("Running every pipeline DAG (Airflow log: " + str(log_path) + ") ...", flush=True)
            child = subprocess.run(
                [sys.executable, "-m", "include.sandbox.demo", "--run-dags", str(result_path)],
                env=env,
                stdout=log,
                stderr=log,
            )
        if child.returncode != 0:
            print(f"The DAG runs failed; see {log_path}", file=sys.stderr)
            return child.returncode
        results = json.loads(result_path.read_text())
        stats = stack.receiver.stats()
    finally:
        stack.stop()

    print()
    print(f"{'pipeline':<26} {'state':<8} " + " ".join(f"{c.split('_')[0]:>9}" for c in COLUMNS))
    failed_runs = 0
    for dag_id, result in results.items():
        summary = result["summary"] or {}
        failed_runs += result["state"] != "success"
        print(f"{dag_id:<26} {result['state']:<8} " + " ".join(f"{summary.get(c, '-'):>9}" for c in COLUMNS))
    print()
    print(
        f"Receiver this run: {stats['items']} new items, {stats['duplicates']} duplicates dropped, "
        f"{stats['requests']} requests"
    )
    print(f"Delivered payloads: {stack.receiver.received_path}")
    print(f"Delivery ledger:    {stack.state_db}")
    print(f'  sqlite3 {stack.state_db} "select pipeline, status, count(*) from cht_bridge_delivery group by 1, 2"')
    print("Failures, with their reasons, are in the ledger (status 'failed' = retried by the next runs,")
    print("'dead' = waits for a person; view cht_bridge_dead_letters) and in the task log. Replay them with")
    print("the cht_bridge_replay DAG; backfill a date window by triggering a pipeline DAG with start/end.")
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
