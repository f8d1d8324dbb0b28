"""DHIS2 aggregate benchmark: N synthetic CHT reports aggregated per month and health facility, and posted.

One run of the demo's kind of aggregate pipeline (counts, a sum and distinct patients, five data
values per facility and month) from an empty checkpoint, in its own worker process: it reads the
whole ``_changes`` feed (finding the touched months), recomputes every month from all of its
reports (``reports_by_date``), and posts every value to the DHIS2 stand-in in chunks of 500.
Printed: the seed time, the run's wall time, reports per second, the values posted, and the
worker's peak RSS, which must stay flat as N grows (reports are reduced page by page into partial
counts; only the cells and the distinct (cell, patient) hashes are kept).

Two modes, both running the same ``run_aggregate`` in a worker process:

- **end to end** (default): the reports are seeded into pouchdb-server (LevelDB) and read over
  HTTP. Loading and indexing are pouchdb-server's slow parts (about 1,000 documents/s to seed and
  300 reports/s to build ``reports_by_date``, see ``bench/local_cht.py``), so use it up to ~100k.
- **in-process** (``--in-process``): the same stream is loaded into a SQLite file
  (``bench.local_cht``) that answers the run's CouchDB reads in-process with CouchDB's answers;
  everything from the page on is the same code (hydration and mapping in V8, the page-by-page
  partial counts, distinct patients, chunked ``POST /api/dataValueSets`` to the DHIS2 stand-in
  over HTTP, import summaries, ledger). This is the mode that reaches a million reports in minutes.
  Its worker CPU includes answering the reads (SQLite), which the end-to-end mode leaves to CouchDB.

``python -m bench.dhis2 --reports 100000`` (``--in-process --reports 1000000`` for a million).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
REPORT_SHARE = 0.80  # of the generated documents (standins/generate.py)
DATA_ELEMENTS = ("CHTpregReg1", "CHTpregWom1", "CHTassessm1", "CHTreferra1", "CHTancVisi1")


def _org_uid(place_id: str) -> str:
    return "O" + uuid.uuid5(uuid.NAMESPACE_URL, place_id).hex[:10]


def health_centres(docs: int) -> list[dict]:
    """The seeded health centres, from the same deterministic stream (no view to build for them)."""
    from standins.generate import generate

    return [d for d in generate(docs) if d.get("type") == "health_center"]


def pipeline(work: Path, table: Path) -> Path:
    raw = yaml.safe_load((ROOT / "include/pipelines/dhis2_monthly_aggregates.yaml").read_text())
    raw["name"] = "bench_dhis2_monthly"
    raw["batch_size"] = 2000
    raw["destination"]["dhis2"]["org_unit"]["table"] = str(table)
    raw["destination"]["dhis2"].pop("data_set", None)
    path = work / "bench_dhis2_monthly.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def worker(args: argparse.Namespace) -> int:
    """The measured part, alone in its process: open, run, print JSON."""
    from cht_bridge.aggregate.run import opened, run_aggregate
    from cht_bridge.config import load_pipeline
    from cht_bridge.sync.resources import Endpoint

    p = load_pipeline(args.pipeline)
    dhis2 = Endpoint(args.dhis2, ("bridge", "district"))
    started, cpu = time.perf_counter(), time.process_time()
    if args.sqlite:  # --in-process: the CHT reads answered from the SQLite file
        from bench.local_cht import LocalCht
        from cht_bridge.aggregate.run import _poster
        from cht_bridge.state import StateStore

        client, poster, store = LocalCht(Path(args.sqlite)), _poster(p, dhis2), StateStore(args.state)
        try:
            client.info()
            summary = run_aggregate(p, client=client, poster=poster, store=store)
        finally:
            poster.close()
            store.close()
    else:
        couch_login = tuple(sys.stdin.readline().strip().split(":", 1))
        with opened(p, cht=Endpoint(args.couch, couch_login), dhis2=dhis2, state_url=args.state) as (
            client,
            poster,
            store,
        ):
            summary = run_aggregate(p, client=client, poster=poster, store=store)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reads = dict(client.requests) if args.sqlite else None  # what the run asked CHT for, per kind
    print(json.dumps({"summary": summary.as_dict(), "elapsed": elapsed, "cpu_s": time.process_time() - cpu,
                      "peak_rss_mb": peak_kb / 1024, "cht_reads": reads}))  # fmt: skip
    return 0


def _couch_source(work: Path, docs: int, stack: contextlib.ExitStack) -> tuple[list[str], str, list[dict], dict]:
    """End to end: seed pouchdb-server (LevelDB, as make bench's pipeline run) and build the view."""
    from standins.couchdb import LocalCouch
    from standins.seed import seed

    couch = LocalCouch(work / "couch", in_memory=False).start()
    stack.callback(couch.stop)
    t = time.perf_counter()
    counts = seed(couch.url, couch.admin_auth, docs)
    seed_s = time.perf_counter() - t
    t = time.perf_counter()
    for view in ("reports_by_date", "contacts_by_reference"):  # CHT keeps its views built: build the run's
        requests.get(  # before timing (pouchdb builds each view of a design doc on its own first query)
            f"{couch.url}/medic/_design/medic-client/_view/{view}", params={"limit": 1},
            auth=couch.admin_auth, timeout=3600,
        ).raise_for_status()  # fmt: skip
    view_s = time.perf_counter() - t
    info = {"server": "pouchdb-server, LevelDB, over HTTP", "reports_seeded": counts.get("reports"),
            "seed_s": round(seed_s, 1), "view_build_s": round(view_s, 1)}  # fmt: skip
    return ["--couch", couch.url], ":".join(couch.admin_auth) + "\n", health_centres(docs), info


def _sqlite_source(work: Path, docs: int) -> tuple[list[str], str, list[dict], dict]:
    """In-process: the same stream in a SQLite file the worker answers the CHT reads from."""
    from bench.local_cht import load
    from standins.generate import generate

    t = time.perf_counter()
    loaded = load(work / "cht.sqlite", generate(docs))
    info = {"server": "in-process SQLite (bench.local_cht), no HTTP to CHT", "reports_seeded": loaded["reports"],
            "seed_s": round(time.perf_counter() - t, 1), "view_build_s": "(index built while loading)"}  # fmt: skip
    return ["--sqlite", str(work / "cht.sqlite")], "", loaded["health_centres"], info


def run(reports: int, in_process: bool = False) -> dict:
    from standins.dhis2 import Dhis2, Metadata

    docs = min(int(reports / REPORT_SHARE), 1_250_000)
    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-dhis2-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        if in_process:
            source, stdin, places, info = _sqlite_source(work, docs)
        else:
            source, stdin, places, info = _couch_source(work, docs, stack)
        table = work / "org_units.csv"
        table.write_text("place_id,org_unit\n" + "".join(f"{p['_id']},{_org_uid(p['_id'])}\n" for p in places))
        units = [{"id": "ImspTQPwCqd", "name": "Root"}] + [
            {"id": _org_uid(p["_id"]), "name": p["name"], "parent": {"id": "ImspTQPwCqd"}} for p in places
        ]
        metadata = Metadata({"organisationUnits": units, "dataElements": [{"id": d} for d in DATA_ELEMENTS]})
        dhis2 = Dhis2(metadata, {"username": "bridge", "password": "district"}).start()
        stack.callback(dhis2.stop)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.dhis2", "--worker", "--pipeline", str(pipeline(work, table)), *source,
             "--dhis2", dhis2.url, "--state", f"sqlite:///{work / 'state.db'}"],
            input=stdin, capture_output=True, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        stored = dhis2.stats()["data_values"]
    s = result["summary"]
    return {
        "mode": "in-process CHT reads" if in_process else "end to end",
        "docs": docs,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        **info,
        "changes_read": s["read"],
        "periods": len(s["periods"]),
        "reports_counted": s["counted"],
        "unplaced": s["unplaced"],
        "values_posted": s["values"],
        "values_stored_at_dhis2": stored,
        "requests": s["import_counts"].get("requests"),
        **({"cht_reads": result["cht_reads"]} if result["cht_reads"] else {}),
        "run_s": round(result["elapsed"], 1),
        "reports_per_s": round(s["reports"] / result["elapsed"]) if result["elapsed"] else None,
        "worker_cpu_s": round(result["cpu_s"], 1),
        "worker_peak_rss_mb": round(result["peak_rss_mb"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--in-process", action="store_true",
        help="answer the CHT reads in-process from SQLite instead of pouchdb-server (for a million reports)",
    )  # fmt: skip
    for name in ("--pipeline", "--couch", "--sqlite", "--dhis2", "--state"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    result = run(args.reports, args.in_process)
    mode = "CHT reads in-process from SQLite" if args.in_process else "end to end from pouchdb-server"
    print(f"DHIS2 aggregate benchmark, {mode} (one run from an empty checkpoint: feed, recompute, post)")
    for key, value in result.items():
        print(f"  {key:<24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
