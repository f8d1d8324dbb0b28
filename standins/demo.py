"""``make demo``: every example pipeline as a real Airflow DAG run on the local CHT sandbox.

It starts the sandbox (see ``stack.py``), runs each DAG generated from ``include/pipelines`` and
``include/reverse`` with ``dag.test()`` in a child process whose Airflow log goes to
``.sandbox/demo.log``, then prints a summary per pipeline and where to look at what was delivered
or created. The reverse pipelines' review questions are answered by a scripted reviewer that knows
the demo lists' truth (in the Airflow UI a person answers them under Required Actions). Run it
again: the second run reads only what changed since the first, and sends or creates nothing new.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from standins import aggregate_demo, dhis2_demo, fhir_demo
from standins import stack as sandbox
from standins.openmrs import print_created
from standins.rapidpro_demo import print_summary as print_rapidpro

COLUMNS = ("read", "relevant", "sent", "unchanged", "failed", "dead_lettered")
REVERSE_COLUMNS = ("received", "link", "review", "new", "unplaced", "persons", "reports")


def run_dags(out: Path) -> int:
    """Child process: run every pipeline DAG once and write their XCom summaries to ``out``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from cht_bridge.dag_factory import BACKFILL_DAG_ID, HOUSEKEEPING_DAG_ID, REPLAY_DAG_ID
    from standins.reviewer import ScriptedReviewer

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    results = {}
    choose = demo_reviewer()
    # replay and the split backfill are for a person to trigger (a pipeline, a window);
    # housekeeping removes nothing of a demo's (all of it is new)
    # reconcile: run after the DAGs, by aggregate_demo, for the seeded year rather than last month;
    # matching_train: monthly, once reviewers have answered (`make airflow` to try it)
    skipped = {REPLAY_DAG_ID, BACKFILL_DAG_ID, HOUSEKEEPING_DAG_ID, "cht_bridge_reconcile", "cht_bridge_matching_train"}
    skipped.add("cht_bridge_pools")  # only with per-Connection pools on: creates pools through the api-server
    for dag_id in sorted(set(bag.dag_ids) - skipped):
        dag = bag.get_dag(dag_id)
        reverse = "match" in dag.task_ids
        with ScriptedReviewer(dag_id, choose) as reviewer:
            run = dag.test()
        with create_session() as session:
            rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, key="return_value")).all()
            xcoms = {(r.task_id, r.map_index): r.value for r in rows}
        summary = reverse_summary(xcoms, len(reviewer.answered)) if reverse else xcoms.get(("sync", -1))
        summary = summary or xcoms.get(("aggregate", -1))  # a DHIS2 aggregate pipeline's one task
        results[dag_id] = {"state": str(run.state), "reverse": reverse, "summary": summary}
    out.write_text(json.dumps(results))
    return 0


def reverse_summary(xcoms: dict, answered: int) -> dict:
    """One line of counts for a reverse pipeline run, from its tasks' XComs."""
    receive, match = xcoms.get(("receive", -1)) or {}, xcoms.get(("match", -1)) or {}
    writes = [xcoms.get((task, -1)) or {} for task in ("write_decided", "write_reviewed")]
    return {
        "received": receive.get("received", 0),
        "link": match.get("link", 0),
        "review": match.get("review", 0),
        "new": match.get("new", 0),
        "unplaced": match.get("unplaced", 0),
        "duplicate": match.get("duplicate", 0),
        "answered": answered,
        "persons": sum(w.get("persons_created", 0) for w in writes),
        "reports": sum(w.get("reports_created", 0) for w in writes),
        "failed": sum(w.get("failed", 0) for w in writes),
    }


def demo_reviewer():
    """Answer review questions as a person who knows the demo lists would: the true candidate,
    a new person when the row is truly new, and skip when the true person is not offered."""
    from cht_bridge.reverse.choices import NEW, SKIP
    from standins.emr_lists import contact_rows, ltfu_patients
    from standins.rapidpro_demo import truth as rapidpro_truth

    truth = {**ltfu_patients()[1], **contact_rows()[1], **rapidpro_truth()}

    def choose(question) -> str:
        offer = question.offer
        true_id = truth.get(offer.record)
        if true_id is None:
            return NEW.label
        return (offer.link_to(true_id) or SKIP).label

    return choose


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
        print(f"CHT (CouchDB protocol) at {stack.couch.url}; CHT API at {stack.cht_api.url}")
        print(f"Receiver at {stack.receiver.url}; EMR FHIR server at {stack.fhir.url}")
        if stack.ltfu_loaded:
            print(f"Loaded the EMR's lost-to-follow-up list: {stack.ltfu_loaded} FHIR Patients")
        env = {**os.environ, **stack.environment()}
        log_path = args.home / "demo.log"
        result_path = args.home / "demo-results.json"
        with open(log_path, "ab") as log:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"], env=env, stdout=log, stderr=log, check=True
            )
            print("Running every pipeline DAG (Airflow log: " + str(log_path) + ") ...", flush=True)
            child = subprocess.run(
                [sys.executable, "-m", "standins.demo", "--run-dags", str(result_path)],
                env=env,
                stdout=log,
                stderr=log,
            )
        if child.returncode != 0:
            print(f"The DAG runs failed; see {log_path}", file=sys.stderr)
            return child.returncode
        results = json.loads(result_path.read_text())
        stats = stack.receiver.stats()
        fhir_demo.print_created(stack.fhir)  # what referrals_to_fhir created there (before the server stops)
        dhis2_totals = aggregate_demo.reconciliation(stack)
        tracker_totals = dhis2_demo.tracker_totals(stack)
    finally:
        stack.stop()

    print()
    print("CHT → other systems")
    print(f"{'pipeline':<26} {'state':<8} " + " ".join(f"{c.split('_')[0]:>9}" for c in COLUMNS))
    failed_runs = 0
    for dag_id, result in results.items():
        summary = result["summary"] or {}
        failed_runs += result["state"] != "success"
        if not result["reverse"]:
            print(f"{dag_id:<26} {result['state']:<8} " + " ".join(f"{summary.get(c, '-'):>9}" for c in COLUMNS))
    print()
    print("Lists → CHT (link / review / new decisions, and what was created in CHT)")
    print(f"{'pipeline':<26} {'state':<8} " + " ".join(f"{c:>9}" for c in REVERSE_COLUMNS))
    for dag_id, result in results.items():
        summary = result["summary"] or {}
        if result["reverse"]:
            print(
                f"{dag_id:<26} {result['state']:<8} " + " ".join(f"{summary.get(c, '-'):>9}" for c in REVERSE_COLUMNS)
            )
            extra = {k: summary.get(k, 0) for k in ("duplicate", "answered", "failed")}
            print(
                f"{'':<26} {'':<8} same person twice: {extra['duplicate']}, review questions answered by the "
                f"demo reviewer: {extra['answered']}, writes refused by CHT: {extra['failed']}"
            )
    print_rapidpro(stack.rapidpro, results)
    print()
    print(
        f"Receiver this run: {stats['items']} new items, {stats['duplicates']} duplicates dropped, "
        f"{stats['requests']} requests"
    )
    print_created(stack.openmrs)
    print(f"Delivered payloads: {stack.receiver.received_path}")
    print(f"Delivery ledger:    {stack.state_db}")
    print(f'  sqlite3 {stack.state_db} "select pipeline, status, count(*) from cht_bridge_delivery group by 1, 2"')
    print(
        f'  sqlite3 {stack.state_db} "select pipeline, status, decision, count(*) from cht_bridge_inbound group by 1, 2, 3"'
    )
    print("Failures, with their reasons, are in the ledger (status 'failed' = retried by the next runs,")
    print("'dead' = waits for a person; view cht_bridge_dead_letters) and in the task log. Replay them with")
    print("the cht_bridge_replay DAG; backfill a date window by triggering a pipeline DAG with start/end.")
    print("A list row CHT refused waits as 'failed' in cht_bridge_inbound: trigger its reverse DAG with")
    print(
        '--conf \'{"replay": "failed"}\' once fixed; a row without a place goes through once its code is in the table.'
    )
    aggregate_demo.print_totals(dhis2_totals)
    dhis2_demo.print_tracker_totals(tracker_totals)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
