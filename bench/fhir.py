"""``make bench``: FHIR resources a second into the local FHIR server (sekmet), end to end from CHT.

N synthetic CHT documents on a local CouchDB-protocol server; their patients become FHIR Patient
resources (the ``patient`` template: one resource a document, so a bundle of ``b`` documents is a
transaction of ``b`` entries) sent with ``destination.type: fhir`` (conditional create) in bundles
of 1, 50 and 200 entries, each into a fresh server. The run is the product's own: the worker
opens what the sync task opens (``sync.resources.opened``) and calls ``run_pipeline``, reading the
whole ``_changes`` feed, hydrating, building and validating every resource, sending, recording.
Beside it, the raw ``_changes?include_docs=true`` read rate of the same server (``bench.pipeline``).

``python -m bench.fhir --docs 10000 [--sizes 1,50,200]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.pipeline import _cpu, raw_read_rate
from standins.couchdb import LocalCouch
from standins.fhir_server import LocalFhir
from standins.seed import seed

SYSTEM = "https://cht.example.org/doc-id"


def pipeline_config(bundle: int) -> dict:
    return {
        "name": f"bench_fhir_{bundle}",
        "start_date": "2026-01-01",
        "cht": {"conn_id": "bench_cht"},
        "relevant_to": "doc.type === 'person' && doc.role === 'patient'",
        "fhir": {"resources": [{"template": "patient", "from": "doc"}]},
        "destination": {
            "type": "fhir",
            "conn_id": "bench_fhir",
            "auth": {"type": "basic"},
            "batch_size": bundle,
            "timeout": 120,
            "fhir": {"identifier_system": SYSTEM},
        },
        "batch_size": 2000,
    }


def run_bundle(work: Path, couch: LocalCouch, bundle: int) -> dict:
    """One pipeline run into a fresh FHIR server with bundles of ``bundle`` entries."""
    from cht_bridge.config import parse_pipeline
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened

    fhir = LocalFhir(work / f"fhir-{bundle}", credentials=("bench", secrets.token_urlsafe(12))).start()
    try:
        pipeline = parse_pipeline(pipeline_config(bundle), file="bench.fhir")
        server = psutil.Process(fhir._proc.pid)
        cpu = _cpu(server)
        ends = {"cht": Endpoint(couch.url, couch.admin_auth), "destination": Endpoint(fhir.url, fhir.credentials)}
        with opened(pipeline, state_url=f"sqlite:///{work / f'state-{bundle}.db'}", **ends) as r:
            sending = _timed(r.destination)
            started = time.perf_counter()
            summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
            elapsed = time.perf_counter() - started
            requests_sent = r.destination.requests
        server_cpu = _cpu(server) - cpu
        with fhir.session() as session:
            stored = session.get(f"{fhir.url}/Patient", params={"identifier": f"{SYSTEM}|", "_count": 1}, timeout=60)
        stored.raise_for_status()
    finally:
        fhir.stop()
    return {
        "bundle_entries": bundle,
        "read": summary.read,
        "resources_sent": summary.sent,
        "failed": summary.failed + summary.dead_lettered,
        "requests": requests_sent,
        "stored": stored.json()["total"],
        "seconds": round(elapsed, 1),
        "resources_per_s": round(summary.sent / elapsed),
        "docs_read_per_s": round(summary.read / elapsed),
        "sending_s": round(sending[0], 1),
        "fhir_server_cpu_s": round(server_cpu, 1),
    }


def _timed(destination: object) -> list[float]:
    """Seconds spent in ``destination.send`` (validation, bundles, the server's answers), summed."""
    spent = [0.0]
    send = destination.send

    def timed_send(deliveries: list) -> list:
        began = time.perf_counter()
        try:
            return send(deliveries)
        finally:
            spent[0] += time.perf_counter() - began

    destination.send = timed_send
    return spent


def run(docs: int, sizes: list[int]) -> tuple[dict, list[dict]]:
    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-fhir-"))
    couch = LocalCouch(work / "couch").start()
    try:
        counts = seed(couch.url, couch.admin_auth, docs)
        raw_read_rate(couch.url, couch.admin_auth)  # a first pass warms the server's caches
        raw_docs, raw_s = raw_read_rate(couch.url, couch.admin_auth)
        rows = [run_bundle(work, couch, size) for size in sizes]
    finally:
        couch.stop()
        shutil.rmtree(work, ignore_errors=True)
    head = {
        "docs": docs,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "fhir_server": "sekmet-fhir (SQLite), conditional create, one transaction at a time",
        "seeded": counts,
        "raw_changes_rate": round(raw_docs / raw_s),
    }
    return head, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--sizes", default="1,50,200", help="bundle sizes (entries), comma-separated")
    args = parser.parse_args(argv)
    head, rows = run(args.docs, [int(s) for s in args.sizes.split(",")])
    for key, value in head.items():
        print(f"{key:<18}  {value}")
    columns = list(rows[0])
    print("  ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>16}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
