"""The demo's DHIS2 stand-in and its tracker totals.

``start`` runs the stand-in the sandbox's DHIS2 pipelines post to (``standins/stack.py`` calls it):
the demo metadata (``standins.dhis2.demo_metadata``: the tracker programs, and the aggregate
pipeline's data set and data elements from ``standins.aggregate_demo``), the org units of
``include/places/dhis2_org_units.csv``, and what it stored kept in ``.sandbox/dhis2.json`` so a
second ``make demo`` continues where the first left off. ``tracker_totals`` counts, through the
Web API as a person would (``GET /api/tracker/events``, paged, either response shape), the events
of each demo tracker program per org unit, and ``reconciliation`` compares the demo event pipeline
with CHT over the seeded year; ``print_tracker_totals`` prints them (counts only).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from standins import aggregate_demo
from standins.dhis2 import Dhis2, demo_metadata
from standins.generate import DEFAULT_ANCHOR_MS, YEAR_MS

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "include" / "pipelines" / "dhis2_assessment_events.yaml"
#: the year the sandbox's reports span: [anchor - a year, anchor)
SEEDED = tuple(datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in (DEFAULT_ANCHOR_MS - YEAR_MS, DEFAULT_ANCHOR_MS))
USER = "cht-bridge"
CONN_ENV = aggregate_demo.CONN_ENV  # AIRFLOW_CONN_DHIS2_LOCAL: one DHIS2 for both kinds
PROGRAMS = {"ChtAssess01": "CHT assessments (event program)", "ChtPregnan1": "CHT pregnancy (tracker program)"}
PAGE_SIZE = 200


def start(home: Path, password: str) -> Dhis2:
    """The sandbox's DHIS2 stand-in, started."""
    metadata = demo_metadata(aggregate_demo.org_units(), aggregate_demo.METADATA)
    return Dhis2(metadata, {"username": USER, "password": password}, state_file=home / "dhis2.json").start()


def connection(dhis2: Dhis2, password: str) -> str:
    return json.dumps({"conn_type": "http", "host": dhis2.url, "login": USER, "password": password})


def events(session: requests.Session, url: str, program: str) -> list[dict[str, Any]]:
    """Every event of ``program`` in the user's org units, read as the reconciliation reads them
    (``destinations/dhis2/events.py``: paged, each version's parameter names and answer shape)."""
    from cht_bridge.destinations.dhis2.events import read_events
    from cht_bridge.http.read import Reader

    reader = Reader(session, conn_id="dhis2_local", system="DHIS2", timeout=30)
    return list(read_events(reader, f"{url}/api", program, page_size=PAGE_SIZE))


def tracker_totals(stack: Any) -> dict[str, Any] | None:
    """Events per demo program and org unit at the stand-in; ``None`` without one."""
    dhis2 = getattr(stack, "dhis2", None)
    if dhis2 is None:
        return None
    with requests.Session() as session:
        session.auth = (USER, stack.credentials["dhis2"])
        per_program = {}
        for program in PROGRAMS:
            found = events(session, dhis2.url, program)
            per_program[program] = {"events": len(found), "org_units": len(Counter(e["orgUnit"] for e in found))}
    stats = dhis2.stats()
    return {"programs": per_program, "tracked_entities": stats["tracked_entities"], "updated": stats["events_updated"],
            "reconciliation": reconciliation(stack)}  # fmt: skip


def reconciliation(stack: Any) -> dict[str, Any]:
    """The demo event pipeline's reconciliation over the seeded year (``aggregate/reconcile_tracker.py``)."""
    from cht_bridge.aggregate.reconcile_tracker import reconcile_tracker
    from cht_bridge.config import load_pipeline
    from cht_bridge.sync.resources import Endpoint, opened

    cht = json.loads(stack.connections()["AIRFLOW_CONN_CHT_LOCAL"])
    pipeline = load_pipeline(PIPELINE)
    with opened(
        pipeline,
        cht=Endpoint(cht["host"], (cht["login"], cht["password"])),
        destination=Endpoint(stack.dhis2.url, (USER, stack.credentials["dhis2"])),
        state_url=f"sqlite:///{stack.state_db}",
    ) as r:
        result = reconcile_tracker(
            pipeline, client=r.client, destination=r.destination, mapper=r.mapper, start=SEEDED[0], end=SEEDED[1],
            folder=stack.airflow_home / "cht_bridge" / "reconcile",
        )  # fmt: skip
    return result.as_dict()


def print_tracker_totals(totals: dict[str, Any] | None) -> None:
    print()
    print("DHIS2 tracker (events counted at the stand-in through GET /api/tracker/events)")
    if totals is None:
        print("  no DHIS2 stand-in in this sandbox")
        return
    for program, counts in totals["programs"].items():
        print(f"  {PROGRAMS[program]}: {counts['events']} events in {counts['org_units']} org units")
    print(f"  tracked entities: {totals['tracked_entities']}; events updated by a repeated send: {totals['updated']}")
    r = totals["reconciliation"]
    print(
        f"  reconciliation of {r['pipeline']} ({r['start']}..{r['end']}): CHT {r['cht_events']} events, DHIS2 "
        f"{r['dhis2_events']}: {r['missing_in_dhis2']} missing in DHIS2, {r['not_in_cht']} not in CHT, "
        f"{r['different_cells']} (month, org unit) counts differ; {r['unplaced_reports']} reports without an org unit"
    )
    print(f"  report: {r['html']}")
