"""DHIS2 aggregate benchmark: N synthetic CHT reports aggregated per month and health facility, and posted.

One run of the demo's kind of aggregate pipeline (counts, a sum and distinct patients, five data
values per facility and month) from an empty checkpoint, in its own worker process: it reads the
whole ``_changes`` feed (finding the touched months), recomputes every month from all of its
reports (``reports_by_date``), and posts every value to the DHIS2 stand-in in chunks of 500.
Printed: the seed time, the run's wall time, reports per second, the values posted, and the
worker's peak RSS, which must stay flat as N grows (reports are reduced page by page into partial
counts; only the cells and the distinct (cell, patient) hashes are kept).

``python -m bench.dhis2 --reports 100000`` (``--reports 1000000`` for a million).
"""

from __future__ import annotations

import argparse
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

    couch_login = tuple(sys.stdin.readline().strip().split(":", 1))
    p = load_pipeline(args.pipeline)
    started, cpu = time.perf_counter(), time.process_time()
    with opened(
        p,
        cht=Endpoint(args.couch, couch_login),
        dhis2=Endpoint(args.dhis2, ("bridge", "district")),
        state_url=args.state,
    ) as (client, poster, store):
        summary = run_aggregate(p, client=client, poster=poster, store=store)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"summary": summary.as_dict(), "elapsed": elapsed, "cpu_s": time.process_time() - cpu,
                      "peak_rss_mb": peak_kb / 1024}))  # fmt: skip
    return 0


def run(reports: int) -> dict:
    from standins.couchdb import LocalCouch
    from standins.dhis2 import Dhis2, Metadata
    from standins.seed import seed

    docs = min(int(reports / REPORT_SHARE), 1_250_000)
    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-dhis2-"))
    couch = LocalCouch(work / "couch", in_memory=False).start()  # LevelDB, as make bench's pipeline run
    dhis2 = None
    try:
        t = time.perf_counter()
        counts = seed(couch.url, couch.admin_auth, docs)
        seed_s = time.perf_counter() - t
        places = health_centres(docs)
        t = time.perf_counter()
        requests.get(  # CHT keeps its views built: build this one before timing
            f"{couch.url}/medic/_design/medic-client/_view/reports_by_date", params={"limit": 1},
            auth=couch.admin_auth, timeout=3600,
        ).raise_for_status()  # fmt: skip
        view_s = time.perf_counter() - t
        table = work / "org_units.csv"
        table.write_text("place_id,org_unit\n" + "".join(f"{p['_id']},{_org_uid(p['_id'])}\n" for p in places))
        units = [{"id": "ImspTQPwCqd", "name": "Root"}] + [
            {"id": _org_uid(p["_id"]), "name": p["name"], "parent": {"id": "ImspTQPwCqd"}} for p in places
        ]
        metadata = Metadata({"organisationUnits": units, "dataElements": [{"id": d} for d in DATA_ELEMENTS]})
        dhis2 = Dhis2(metadata, {"username": "bridge", "password": "district"}).start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.dhis2", "--worker", "--pipeline", str(pipeline(work, table)),
             "--couch", couch.url, "--dhis2", dhis2.url, "--state", f"sqlite:///{work / 'state.db'}"],
            input=":".join(couch.admin_auth) + "\n", capture_output=True, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        stored = dhis2.stats()["data_values"]
    finally:
        if dhis2 is not None:
            dhis2.stop()
        couch.stop()
        shutil.rmtree(work, ignore_errors=True)
    s = result["summary"]
    return {
        "docs": docs,
        "reports_seeded": counts.get("reports"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "server": "pouchdb-server, LevelDB",
        "seed_s": round(seed_s, 1),
        "view_build_s": round(view_s, 1),
        "changes_read": s["read"],
        "periods": len(s["periods"]),
        "reports_counted": s["counted"],
        "unplaced": s["unplaced"],
        "values_posted": s["values"],
        "values_stored_at_dhis2": stored,
        "requests": s["import_counts"].get("requests"),
        "run_s": round(result["elapsed"], 1),
        "reports_per_s": round(s["reports"] / result["elapsed"]) if result["elapsed"] else None,
        "worker_cpu_s": round(result["cpu_s"], 1),
        "worker_peak_rss_mb": round(result["peak_rss_mb"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--pipeline", "--couch", "--dhis2", "--state"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    result = run(args.reports)
    print("DHIS2 aggregate benchmark (one run from an empty checkpoint: feed, recompute, post)")
    for key, value in result.items():
        print(f"  {key:<24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
