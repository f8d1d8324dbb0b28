"""``make bench``: FHIR resources a second into the OpenMRS FHIR2 stand-in, end to end from CHT.

N synthetic CHT documents; every assessment report with a patient becomes [Patient, Practitioner
(the CHW), Task] through the FHIR templates, validated, and written one request per resource
(``GET`` then ``POST``/``PUT``, ``destination.type: openmrs``) by a worker process that runs the
same code an Airflow task runs (``sync.resources.opened`` + ``run_pipeline``, as
``bench/worker.py``). The stand-in runs in this process, so the worker has its own interpreter.
Measured beside the raw ``_changes?include_docs`` read rate of the same server (``bench.pipeline``'s
reader, second of two passes).

``python -m bench.openmrs --docs 5000``
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.pipeline import print_result, raw_read_rate
from standins.couchdb import LocalCouch
from standins.generate import generate
from standins.openmrs import OpenMrs, table_locations
from standins.seed import seed

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "https://cht.example.org/id"


def pipeline(locations: Path, concurrency: int) -> dict:
    return {
        "name": "bench_openmrs",
        "start_date": "2026-01-01",
        "cht": {"conn_id": "bench_cht"},
        "relevant_to": "doc.type === 'data_record' && doc.form === 'assessment' && !!doc.patient",
        "fhir": {
            "identifier_type": "CHT Document ID",
            "resources": [
                {"template": "patient", "from": "doc.patient", "fields": {"organization": "doc.patient.parent.parent"}},
                {"template": "practitioner", "from": "doc.contact"},
                {
                    "template": "task",
                    "from": "doc",
                    "fields": {"reason": {"path": "doc.fields.symptoms", "optional": True}},
                    "codes": {"code": {"system": "http://snomed.info/sct", "code": "3457005"}},
                },
            ],
        },
        "destination": {
            "type": "openmrs",
            "conn_id": "bench_openmrs",
            "concurrency": concurrency,
            "openmrs": {"identifier_system": SYSTEM, "locations": str(locations)},
        },
        "batch_size": 2000,
    }


def worker(argv: list[str]) -> int:
    """One run of the pipeline in ``--config``; stdin: CHT ``user:password``, then OpenMRS ``user:password``."""
    from cht_bridge.config import parse_pipeline
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--couch", required=True)
    parser.add_argument("--openmrs", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    cht_auth = tuple(sys.stdin.readline().rstrip("\n").split(":", 1))
    openmrs_auth = tuple(sys.stdin.readline().rstrip("\n").split(":", 1))
    config = parse_pipeline(json.loads(args.config.read_text()), file=str(args.config))
    cht, openmrs = Endpoint(args.couch, cht_auth), Endpoint(args.openmrs, openmrs_auth)
    with opened(config, cht=cht, destination=openmrs, state_url=args.state) as r:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        summary = run_pipeline(config, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        elapsed = time.perf_counter() - started
        requests_sent = r.destination.requests
        failures = r.store.failures(config.name, limit=100_000)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    reasons = Counter(re.sub(r"[0-9a-f-]{36}|'[^']*'", "…", f["last_error"] or "")[:120] for f in failures)
    result = {"summary": summary.as_dict(), "elapsed": elapsed, "requests": requests_sent, "cpu_s": cpu}
    print(json.dumps({**result, "failures": dict(reasons.most_common(3))}))
    return 0


def location_table(docs: int, path: Path) -> Path:
    """Every seeded health centre → a Location uuid (``seed`` loads ``generate(docs)``)."""
    with open(path, "w", newline="") as out:
        table = csv.writer(out)
        table.writerow(["cht_place", "location_uuid", "name"])
        for doc in generate(docs):
            if doc.get("type") == "health_center":
                table.writerow([doc["_id"], str(uuid.uuid5(uuid.NAMESPACE_URL, doc["_id"])), ""])
    return path


def run(docs: int, concurrency: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-openmrs-"))
    couch = LocalCouch(work / "couch").start()
    try:
        seed(couch.url, couch.admin_auth, docs)
        raw_read_rate(couch.url, couch.admin_auth)  # warms the server's caches
        raw_docs, raw_s = raw_read_rate(couch.url, couch.admin_auth)
        table = location_table(docs, work / "emr_locations.csv")
        config = work / "pipeline.json"
        config.write_text(json.dumps(pipeline(table, concurrency)))
        with OpenMrs(credentials=("admin", uuid.uuid4().hex), locations=table_locations(table)) as openmrs:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
            cmd = [sys.executable, "-m", "bench.openmrs", "--worker", "--config", str(config), "--couch", couch.url]
            cmd += ["--openmrs", openmrs.url, "--state", f"sqlite:///{work / 'state.db'}"]
            secrets = f"{':'.join(couch.admin_auth)}\n{':'.join(openmrs.credentials)}\n"
            done = subprocess.run(cmd, input=secrets, capture_output=True, text=True, env=env, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(done.stderr[-3000:])
            result = json.loads(done.stdout.strip().splitlines()[-1])
            writes = [r for r in openmrs.requests_made() if r[0] in ("POST", "PUT")]
            refused = [r for r in writes if r[2] >= 400]  # each answered, then retried or refused
            held = {kind: len(openmrs.resources(kind)) for kind in ("Patient", "Practitioner", "Task")}
    finally:
        couch.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary, elapsed = result["summary"], result["elapsed"]
    raw_rate = raw_docs / raw_s
    return {
        "docs": docs,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "concurrency": concurrency,
        "raw_changes_rate": round(raw_rate),
        "e2e_read": summary["read"],
        "e2e_relevant": summary["relevant"],
        "e2e_sent_documents": summary["sent"],
        "e2e_failed": summary["failed"] + summary["dead_lettered"],
        "e2e_seconds": round(elapsed, 1),
        "e2e_docs_read_rate": round(summary["read"] / elapsed),
        "resources_written": len(writes) - len(refused),
        "write_error_answers": len(refused),
        "resources_per_s": round((len(writes) - len(refused)) / elapsed, 1),
        "requests_per_s": round(result["requests"] / elapsed, 1),
        "held_at_openmrs": held,
        "cpu_s_worker": round(result["cpu_s"], 1),
        "failure_reasons": result["failures"],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4, help="documents in flight (destination.concurrency)")
    args = parser.parse_args(argv)
    print_result(run(args.docs, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
