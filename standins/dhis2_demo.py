"""The demo's DHIS2 stand-in and its tracker totals.

``start`` runs the stand-in the sandbox's DHIS2 pipelines post to (``standins/stack.py`` calls it):
the demo metadata (``standins.dhis2.demo_metadata``: the tracker programs, and the aggregate
pipeline's data set and data elements from ``standins.aggregate_demo``), the org units of
``include/places/dhis2_org_units.csv``, and what it stored kept in ``.sandbox/dhis2.json`` so a
second ``make demo`` continues where the first left off. ``tracker_totals`` counts, through the
Web API as a person would (``GET /api/tracker/events``, paged, either response shape), the events
of each demo tracker program per org unit; ``print_tracker_totals`` prints them (counts only).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from standins import aggregate_demo
from standins.dhis2 import Dhis2, demo_metadata

USER = "cht-bridge"
CONN_ENV = aggregate_demo.CONN_ENV  # AIRFLOW_CONN_DHIS2_LOCAL: one DHIS2 for both kinds
PROGRAMS = {"ChtAssess01": "CHT assessments (event program)", "ChtPregnan1": "CHT pregnancy (tracker program)"}
PAGE_SIZE = 200
MAX_PAGES = 1000


def start(home: Path, password: str) -> Dhis2:
    """The sandbox's DHIS2 stand-in, started."""
    metadata = demo_metadata(aggregate_demo.org_units(), aggregate_demo.METADATA)
    return Dhis2(metadata, {"username": USER, "password": password}, state_file=home / "dhis2.json").start()


def connection(dhis2: Dhis2, password: str) -> str:
    return json.dumps({"conn_type": "http", "host": dhis2.url, "login": USER, "password": password})


def events(session: requests.Session, url: str, program: str) -> list[dict[str, Any]]:
    """Every event of ``program`` in the user's org units, page by page (≤ 2.40 ``instances``, 2.41+ ``events``)."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        params = {
            "program": program,
            "orgUnitMode": "ACCESSIBLE",
            "ouMode": "ACCESSIBLE",
            "page": page,
            "pageSize": PAGE_SIZE,
        }
        answer = session.get(f"{url}/api/tracker/events", params=params, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        items = body.get("events", body.get("instances", []))
        fresh = [e for e in items if e["event"] not in seen]
        if items and not fresh:
            raise RuntimeError(f"page {page} repeats earlier events: stopping")
        seen.update(e["event"] for e in fresh)
        found += fresh
        if len(items) < PAGE_SIZE:
            return found
    raise RuntimeError(f"more than {MAX_PAGES} pages of events")


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
    return {"programs": per_program, "tracked_entities": stats["tracked_entities"], "updated": stats["events_updated"]}


def print_tracker_totals(totals: dict[str, Any] | None) -> None:
    print()
    print("DHIS2 tracker (events counted at the stand-in through GET /api/tracker/events)")
    if totals is None:
        print("  no DHIS2 stand-in in this sandbox")
        return
    for program, counts in totals["programs"].items():
        print(f"  {PROGRAMS[program]}: {counts['events']} events in {counts['org_units']} org units")
    print(f"  tracked entities: {totals['tracked_entities']}; events updated by a repeated send: {totals['updated']}")
