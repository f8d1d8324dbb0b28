"""The demo's DHIS2 aggregate part: what the DHIS2 stand-in must know, and the reconciliation totals.

``make demo`` runs ``include/pipelines/dhis2_monthly_aggregates.yaml`` as a DAG like every other
pipeline; the DHIS2 stand-in it posts to (``standins.dhis2``, started by ``standins/stack.py``)
needs the pipeline's org units (``include/places/dhis2_org_units.csv``: the sandbox's health
centres but one, whose reports the run lists as unplaced) and its data elements and data set
(``METADATA``): ``demo_metadata(org_units(), METADATA)``. After the DAG runs, ``reconciliation``
compares every month of the seeded year between CHT and the stand-in and ``print_totals`` prints
the totals (counts only).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "include" / "pipelines" / "dhis2_monthly_aggregates.yaml"
TABLE = ROOT / "include" / "places" / "dhis2_org_units.csv"
CONN_ENV = "AIRFLOW_CONN_DHIS2_LOCAL"

#: The demo pipeline's data elements and data set, in the shape the metadata API returns them.
METADATA: dict[str, list[dict[str, Any]]] = {
    "dataElements": [
        {"id": "CHTpregReg1", "code": "CHT_PREG_REG", "name": "CHT pregnancy registrations", "domainType": "AGGREGATE"},
        {"id": "CHTpregWom1", "code": "CHT_PREG_WOMEN", "name": "CHT women registered pregnant", "domainType": "AGGREGATE"},
        {"id": "CHTassessm1", "code": "CHT_ASSESSMENTS", "name": "CHT assessments", "domainType": "AGGREGATE"},
        {"id": "CHTreferra1", "code": "CHT_REFERRALS", "name": "CHT referrals", "domainType": "AGGREGATE"},
        {"id": "CHTancVisi1", "code": "CHT_ANC_VISITS_SUM", "name": "CHT ANC visits reported", "domainType": "AGGREGATE"},
    ],
    "dataSets": [
        {
            "id": "CHTcommMon1",
            "code": "CHT_COMMUNITY_MONTHLY",
            "name": "CHT community monthly",
            "periodType": "Monthly",
            "dataSetElements": [
                {"dataElement": {"id": d}} for d in ("CHTpregReg1", "CHTpregWom1", "CHTassessm1", "CHTreferra1", "CHTancVisi1")
            ],
        }
    ],
}  # fmt: skip


def org_units() -> list[tuple[str, str, str]]:
    """``(uid, code, name)`` of every org unit the demo table names, for ``demo_metadata``."""
    rows = csv.DictReader(TABLE.read_text(encoding="utf-8").splitlines())
    return [(r["org_unit"], r["org_unit"], r.get("name") or r["org_unit"]) for r in rows]


def reconciliation(stack: Any, start: datetime | None = None, end: datetime | None = None) -> dict[str, Any] | None:
    """Compare the demo pipeline's months (the seeded year) between CHT and the stand-in; ``None`` without one."""
    connection = stack.connections().get(CONN_ENV)
    if connection is None:
        return None
    from cht_bridge.aggregate.reconcile import reconcile
    from cht_bridge.aggregate.run import opened
    from cht_bridge.config import load_pipeline
    from cht_bridge.sync.resources import Endpoint

    cht = json.loads(stack.connections()["AIRFLOW_CONN_CHT_LOCAL"])
    dhis2 = json.loads(connection)
    pipeline = load_pipeline(PIPELINE)
    # The seeded reports: the year before 2026-11-01 00:00 UTC, which is already November in Nairobi.
    start = start or datetime(2025, 11, 1, tzinfo=UTC)
    end = end or datetime(2026, 12, 1, tzinfo=UTC)
    with opened(
        pipeline,
        cht=Endpoint(cht["host"], (cht["login"], cht["password"])),
        dhis2=Endpoint(dhis2["host"], (dhis2["login"], dhis2["password"])),
        state_url=f"sqlite:///{stack.state_db}",
    ) as (client, poster, store):
        result = reconcile(
            pipeline, client=client, poster=poster, store=store, start=start, end=end,
            folder=stack.airflow_home / "cht_bridge" / "reconcile",
        )  # fmt: skip
    return result.as_dict()


def print_totals(totals: dict[str, Any] | None) -> None:
    """The reconciliation's totals, as ``make demo`` prints them."""
    print()
    print("DHIS2 reconciliation (monthly aggregates recomputed from CHT vs the values DHIS2 holds)")
    if totals is None:
        print("  no DHIS2 stand-in in this sandbox")
        return
    periods = totals["periods"]
    print(
        f"  {totals['pipeline']}: {len(periods)} months ({periods[0]}..{periods[-1]}), CHT {totals['cht_values']} "
        f"values, DHIS2 {totals['dhis2_values']}: {totals['equal']} equal, {totals['missing_in_dhis2']} missing in "
        f"DHIS2, {totals['not_in_cht']} not in CHT, {totals['different']} different"
    )
    print(f"  {totals['unplaced_reports']} reports not counted: their facility has no DHIS2 org unit in {TABLE.name}")
    print(f"  report: {totals['html']}")
