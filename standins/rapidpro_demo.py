"""The RapidPro part of ``make demo``: a workspace with two flows, and what happened to it.

* **Self-screening round trip** (``include/reverse/self_screening_rapidpro.yaml``): community
  members answered the "Self screening" flow; their completed runs become ``SELF_SCREENING``
  reports in CHT, and a report with symptoms gives the person's CHW a follow-up task
  (``include/cht_config/tasks.js``). The seeded runs cover each way a person is found: three CHT
  patients by their phone (contacts-by-phone), a new person placed by the facility they answered,
  a new person sharing a phone registered in CHT (placed in that household, after review), one
  run still in progress (not read until it completes), and one run with no place (set aside).
* **No symptoms → self-quarantine flow** (``include/pipelines/self_quarantine_rapidpro.yaml``,
  ``cht.md`` §1.11 example 3): contact-tracing follow-ups (``covid_trace_follow_up``) added to the
  synthetic CHT, some without symptoms, whose contacts get the "Self quarantine" flow started.

Everything is deterministic (document ids, run uuids, dates), so a second ``make demo`` reads the
same runs and follow-ups and creates or starts nothing new. The workspace itself lives in memory;
the bridge's checkpoints, ledgers and budget are in the sandbox's state store. Nothing printed
here holds a name or a phone number.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from standins.fixed_docs import SETTINGS_DOC
from standins.rapidpro import RapidProStandIn

SCREENING_FLOW = "3c6f5a2e-8d7b-4f1e-9a4c-2b5d8e7f6a10"  # include/reverse/self_screening_rapidpro.yaml
QUARANTINE_FLOW = "f5901b62-ba76-4003-9c62-72fdacc1b7b7"  # include/pipelines/self_quarantine_rapidpro.yaml
FACILITY_CODE = "13101"  # include/places/facilities.csv
T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
FOLLOW_UPS = 24
TRUTH_FILE = "rapidpro_truth.json"


def _run_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cht-bridge-demo-run:{name}"))


def start(home: Path, couch: Any, token: str) -> RapidProStandIn:
    """The workspace with its flows and seeded runs; the follow-up reports added to CHT once."""
    rapidpro = RapidProStandIn(token, fields=("cht_id",)).start()
    try:
        rapidpro.add_flow("Self screening", SCREENING_FLOW)
        rapidpro.add_flow("Self quarantine", QUARANTINE_FLOW)
        _ensure_form(couch)
        people = _patients_with_phones(couch)
        _add_follow_ups(couch, people[5 : 5 + FOLLOW_UPS])
        truth = _seed_runs(rapidpro, people)
        (home / TRUTH_FILE).write_text(json.dumps(truth))
    except BaseException:
        rapidpro.stop()
        raise
    return rapidpro


def truth() -> dict[str, str]:
    """Run uuid -> the CHT person it truly is, for the demo's scripted reviewer (empty: new people)."""
    home = Path(os.environ["AIRFLOW_HOME"]).parent if "AIRFLOW_HOME" in os.environ else None
    path = home / TRUTH_FILE if home else None
    return json.loads(path.read_text()) if path is not None and path.exists() else {}


def _ensure_form(couch: Any) -> None:
    """An older sandbox's app_settings get the SELF_SCREENING form (``stack`` adds missing keys only)."""
    url = f"{couch.url}/medic/settings"
    doc = requests.get(url, auth=couch.admin_auth, timeout=30).json()
    forms = doc.setdefault("settings", {}).setdefault("forms", {})
    if "SELF_SCREENING" not in forms:
        forms["SELF_SCREENING"] = SETTINGS_DOC["settings"]["forms"]["SELF_SCREENING"]
        requests.put(url, json=doc, auth=couch.admin_auth, timeout=30).raise_for_status()


def _patients_with_phones(couch: Any) -> list[dict[str, Any]]:
    """Persons of the synthetic CHT with a valid phone (as the matcher reads it), in a stable order."""
    from cht_bridge.matching import normalise_phone

    view = f"{couch.url}/medic/_design/medic-client/_view/contacts_by_phone"
    answer = requests.get(view, params={"include_docs": "true"}, auth=couch.admin_auth, timeout=120)
    answer.raise_for_status()
    docs = [row["doc"] for row in answer.json()["rows"] if row.get("doc")]
    people = [
        d
        for d in docs
        if d.get("type") == "person"
        and d.get("name")
        and (d.get("parent") or {}).get("_id")
        and normalise_phone(d.get("phone")) == d.get("phone")
        and not d.get("source_ref")  # the synthetic CHT's own, not people the demo's reverse pipelines created
    ]
    return sorted(people, key=lambda d: d["_id"])


def _add_follow_ups(couch: Any, people: list[dict[str, Any]]) -> None:
    """Contact-tracing follow-ups (the CHT form of cht.md §1.11 example 3): every third with symptoms.

    Added once, with the sandbox: a later start adds none, whatever people CHT has by then.
    """
    first = requests.get(f"{couch.url}/medic/demo-trace-follow-up-000", auth=couch.admin_auth, timeout=30)
    if first.status_code == 200:
        return
    docs = []
    for i, person in enumerate(people):
        reported = T0 + timedelta(days=i % 3, hours=i)
        docs.append(
            {
                "_id": f"demo-trace-follow-up-{i:03d}",
                "type": "data_record",
                "form": "covid_trace_follow_up",
                "reported_date": int(reported.timestamp() * 1000),
                "contact": person.get("parent"),
                "fields": {
                    "patient_uuid": person["_id"],
                    "trace": {"symptom": "yes" if i % 3 == 0 else "no"},
                    "inputs": {
                        "contact": {
                            "_id": person["_id"],
                            "phone": person["phone"],
                            "surname": person["name"].split()[-1],
                        }
                    },
                },
            }
        )
    # The first document last: a start stopped half-way adds the rest next time.
    for batch in (docs[1:], docs[:1]):
        answer = requests.post(f"{couch.url}/medic/_bulk_docs", json={"docs": batch}, auth=couch.admin_auth, timeout=60)
        answer.raise_for_status()


def _seed_runs(rapidpro: RapidProStandIn, people: list[dict[str, Any]]) -> dict[str, str]:
    """The self-screening runs; returns the reviewer's truth for the runs of known CHT persons."""
    answers = lambda symptoms, **more: {  # noqa: E731
        "symptoms": {"value": symptoms, "category": symptoms.title()},
        "fever": {"value": "yes" if symptoms == "yes" else "no", "category": "Yes" if symptoms == "yes" else "No"},
        **more,
    }
    truth: dict[str, str] = {}
    for i, person in enumerate(people[:3]):  # CHT patients, found by their phone
        run = _run_id(f"known-{i}")
        rapidpro.add_run(
            SCREENING_FLOW, f"tel:{person['phone']}", answers("yes" if i != 1 else "no", name=person["name"]),
            name=person["name"], modified_on=T0 + timedelta(minutes=i), run_uuid=run,
        )  # fmt: skip
        truth[run] = person["_id"]
    rapidpro.add_run(  # unknown to CHT; answered the facility they belong to
        SCREENING_FLOW, "tel:+254799100200",
        answers("yes", name="Neema Atieno", facility={"value": "Mbita", "category": FACILITY_CODE}),
        name="Neema Atieno", modified_on=T0 + timedelta(minutes=3), run_uuid=_run_id("new-by-answer"),
    )  # fmt: skip
    shared = people[3]  # unknown to CHT, on a phone registered there to someone else in the household
    rapidpro.add_run(
        SCREENING_FLOW, f"tel:{shared['phone']}", answers("yes", name="Zawadi Chebet"),
        name="Zawadi Chebet", modified_on=T0 + timedelta(minutes=4), run_uuid=_run_id("new-by-phone"),
    )  # fmt: skip
    rapidpro.add_run(  # still answering: read once it completes
        SCREENING_FLOW, "tel:+254799100300", {"name": {"value": "Kamau Njoroge"}}, name="Kamau Njoroge",
        exit_type=None, modified_on=T0 + timedelta(minutes=5), run_uuid=_run_id("active"),
    )  # fmt: skip
    rapidpro.add_run(  # no place: neither an answer nor a registered phone
        SCREENING_FLOW, "tel:+254799100400", answers("no", name="Baraka Kiprop"), name="Baraka Kiprop",
        modified_on=T0 + timedelta(minutes=6), run_uuid=_run_id("unplaced"),
    )  # fmt: skip
    return truth


def print_summary(rapidpro: RapidProStandIn | None, results: dict[str, Any]) -> None:
    """What the two RapidPro pipelines did this run (counts only)."""
    if rapidpro is None:
        return
    starts = rapidpro.starts
    forward = (results.get("self_quarantine_rapidpro") or {}).get("summary") or {}
    reverse = (results.get("self_screening_from_rapidpro") or {}).get("summary") or {}
    print()
    print("RapidPro (stand-in workspace)")
    print(
        f"  no symptoms → self-quarantine flow: {forward.get('sent', 0)} follow-ups started in {len(starts)} flow "
        f"start(s) of up to 100 URNs; {forward.get('waiting', 0)} wait for the request budget; "
        f"budget left for the next run: {forward.get('budget_left')}"
    )
    print(
        f"  self-screening round trip: {reverse.get('received', 0)} completed runs read, "
        f"{reverse.get('reports', 0)} SELF_SCREENING reports written to CHT "
        f"({reverse.get('link', 0)} people found by phone or matching, {reverse.get('new', 0)} new, "
        f"{reverse.get('review', 0)} reviewed, {reverse.get('unplaced', 0)} without a place); a report "
        "with symptoms gives the person's CHW a follow-up task (include/cht_config/tasks.js)"
    )
