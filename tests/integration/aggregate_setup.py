"""What the DHIS2 aggregate tests share: a seeded CHT, the DHIS2 stand-in knowing its facilities,
an aggregate pipeline file for them, and the counts computed independently from the seeded docs."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from cht_bridge.config import load_pipeline
from cht_bridge.sync.resources import Endpoint
from standins.dhis2 import Dhis2, Metadata

ROOT_OU = "ImspTQPwCqd"
DE_PREG, DE_WOMEN, DE_ASSESS, DE_REFER, DE_ANC = (
    "CHTpregReg1",
    "CHTpregWom1",
    "CHTassessm1",
    "CHTreferra1",
    "CHTancVisi1",
)
ZONE = "Africa/Nairobi"
CREDENTIALS = {"username": "bridge", "password": "district"}


def org_uid(place_id: str) -> str:
    """A valid DHIS2 UID per place (letter first, 11 characters)."""
    return "O" + uuid.uuid5(uuid.NAMESPACE_URL, place_id).hex[:10]


def facilities(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("type") == "health_center"]


def write_table(path: Path, places: list[dict]) -> Path:
    path.write_text(
        "place_id,org_unit,name\n" + "".join(f"{p['_id']},{org_uid(p['_id'])},{p['name']}\n" for p in places)
    )
    return path


def stand_in(places: list[dict], version: str = "2.40.3") -> Dhis2:
    """The DHIS2 stand-in with an org unit per place, the demo's data elements, no data set."""
    units = [{"id": ROOT_OU, "name": "Kenya"}] + [
        {"id": org_uid(p["_id"]), "name": p["name"], "parent": {"id": ROOT_OU}} for p in places
    ]
    elements = [{"id": de, "name": de} for de in (DE_PREG, DE_WOMEN, DE_ASSESS, DE_REFER, DE_ANC)]
    server = Dhis2(Metadata({"organisationUnits": units, "dataElements": elements}), CREDENTIALS, version=version)
    return server.start()


def pipeline_file(
    folder: Path,
    table: Path | None,
    period: str = "monthly",
    db: str = "medic",
    field: str | None = None,
    top: dict | None = None,
    **extra: Any,
) -> Path:
    """An aggregate pipeline over pregnancy and assessment reports, per health centre: its org unit
    from ``table``, or from the health centre's own ``field``."""
    where = {"table": str(table)} if field is None else {"field": field}
    where = {"lineage": "submitter", "level": "health_center", **where, **extra.pop("org_unit", {})}
    dhis2 = {
        "kind": "aggregate",
        "period": period,
        "time_zone": ZONE,
        "org_unit": where,
        "data_values": [
            {"name": "pregnancies", "aggregate": "count", "filter": "doc.form === 'pregnancy'", "data_element": DE_PREG},
            {"name": "women", "aggregate": "distinct_patients", "filter": "doc.form === 'pregnancy'", "data_element": DE_WOMEN},
            {"name": "assessments", "aggregate": "count", "filter": "doc.form === 'assessment'", "data_element": DE_ASSESS},
            {"name": "referrals", "aggregate": "count", "filter": "doc.form === 'assessment' && doc.fields.referral === 'yes'", "data_element": DE_REFER},
            {"name": "anc", "aggregate": "sum", "filter": "doc.form === 'pregnancy'", "field": "doc.fields.anc_visits", "data_element": DE_ANC},
        ],
        **extra,
    }  # fmt: skip
    name = f"agg_{period}_{uuid.uuid4().hex[:6]}"
    raw = {
        "name": name,
        "schedule": None,
        "start_date": "2026-01-01",
        "cht": {"conn_id": f"cht_{name}", "db": db},
        "relevant_to": "doc.type === 'data_record' && ['pregnancy', 'assessment'].indexOf(doc.form) !== -1",
        "mapping": {"report_id": "doc._id"},
        "batch_size": 200,
        "destination": {"type": "dhis2", "conn_id": f"dhis2_{name}", "auth": {"type": "basic"}, "dhis2": dhis2},
    }
    for key, value in (top or {}).items():  # top-level keys; ``destination`` ones merge into it
        raw[key] = {**raw[key], **value} if key == "destination" else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def endpoints(cht: Any, dhis2: Dhis2) -> dict[str, Any]:
    return {
        "cht": Endpoint(cht.url, cht.user),
        "dhis2": Endpoint(dhis2.url, (CREDENTIALS["username"], CREDENTIALS["password"])),
    }


def expected(
    docs: list[dict], period_of: Any, org_units: dict[str, str], lineage: str = "submitter"
) -> dict[tuple[str, str, str], float]:
    """The data values, computed here from the documents as stored (no bridge code):
    ``(period, org unit, data element) -> value``; the facility from the submitter's lineage or
    the patient's (``fields.patient_uuid``'s person document)."""
    by_id = {d["_id"]: d for d in docs}
    zone = ZoneInfo(ZONE)
    counts: Counter = Counter()
    women: dict[tuple[str, str], set] = {}
    for d in docs:
        if d.get("type") != "data_record" or d.get("form") not in ("pregnancy", "assessment"):
            continue
        root = d.get("contact") if lineage == "submitter" else by_id.get(d["fields"]["patient_uuid"])
        node, facility = (root or {}).get("parent"), None
        while node:
            if by_id.get(node["_id"], {}).get("type") == "health_center":
                facility = node["_id"]
                break
            node = node.get("parent")
        ou = org_units.get(facility)
        if ou is None:
            continue
        period = period_of(datetime.fromtimestamp(d["reported_date"] / 1000, UTC).astimezone(zone).date())
        if d["form"] == "pregnancy":
            counts[(period, ou, DE_PREG)] += 1
            counts[(period, ou, DE_ANC)] += d["fields"].get("anc_visits", 0)
            women.setdefault((period, ou), set()).add(d["fields"]["patient_uuid"])
        else:
            counts[(period, ou, DE_ASSESS)] += 1
            if d["fields"].get("referral") == "yes":
                counts[(period, ou, DE_REFER)] += 1
    for (period, ou), ids in women.items():
        counts[(period, ou, DE_WOMEN)] = len(ids)
    return {k: float(v) for k, v in counts.items()}


def held(dhis2: Dhis2) -> dict[tuple[str, str, str], float]:
    """What the stand-in stores (live values), ``(period, org unit, data element) -> value``."""
    return {(k[1], k[2], k[0]): float(v["value"]) for k, v in dhis2.values.snapshot() if not v["deleted"]}


def load(path: Path) -> Any:
    return load_pipeline(path)
