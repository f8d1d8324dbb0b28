"""The benchmark's worker process: one pipeline run, the same code an Airflow task runs.

It opens what the task opens (``sync.resources.opened``), from the URLs it is given instead of
Airflow Connections.

It reports its own peak RSS (``ru_maxrss``), so the figure is the worker's alone, not the
server's or the receiver's.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from dataclasses import replace

from cht_bridge.config import parse_pipeline
from cht_bridge.sync import run_pipeline
from cht_bridge.sync.resources import Endpoint, opened

PIPELINE = {
    "name": "bench_reports",
    "start_date": "2026-01-01",
    "cht": {"conn_id": "bench_cht"},
    "relevant_to": "doc.type === 'data_record' && !!doc.form",
    "mapping": {
        "id": "doc._id",
        "form": "doc.form",
        "reported_at": {"expr": "new Date(doc.reported_date).toISOString()"},
        "patient.cht_id": {"path": "doc.patient._id", "optional": True},
        "patient.shortcode": {"path": "doc.fields.patient_id", "optional": True},
        "patient.sex": {"path": "doc.patient.sex", "optional": True},
        "chw.id": "doc.contact._id",
        "facility.id": "doc.contact.parent._id",
        "facility.name": {"path": "doc.contact.parent.name", "optional": True},
        "area.id": {"path": "doc.contact.parent.parent._id", "optional": True},
    },
    "destination": {"conn_id": "bench_receiver", "path": "/bench", "mode": "batch", "batch_size": 500},
    "batch_size": 2000,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--couch", required=True)
    parser.add_argument("--db", default="medic")
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--state", required=True, help="SQLAlchemy URL of the state store")
    parser.add_argument("--mode", default="batch", choices=["batch", "single"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    user, password = sys.stdin.readline().strip().split(":", 1)  # credentials never on argv

    config = {**PIPELINE, "destination": {**PIPELINE["destination"], "mode": args.mode}}
    pipeline = parse_pipeline(config, file="bench")
    pipeline = replace(pipeline, cht_db=args.db)
    cht, receiver = Endpoint(args.couch, (user, password)), Endpoint(args.receiver)
    with opened(pipeline, cht=cht, destination=receiver, state_url=args.state) as r:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "summary": summary.as_dict(),
        "elapsed": elapsed,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
