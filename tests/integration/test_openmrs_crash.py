"""A worker killed in the middle of an ``openmrs`` run, and run again, leaves one Patient per person.

OpenMRS has no conditional create (``destinations.md`` §2.2): only the deterministic ids and the
``GET`` before each write keep a re-sent Patient from being a second one. The worker is the crash
tests' child process (``tests/integration/test_crash_safety.py``: it opens what the sync task
opens, from plain URLs, and reads its credentials from stdin); the OpenMRS stand-in runs here and
slows each FHIR request a little so a run lasts long enough to be killed in its middle.
"""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from pathlib import Path

import pytest
import requests

from cht_bridge.fhir.ids import resource_id
from standins.openmrs import OpenMrs, table_locations
from tests.integration.test_crash_safety import SEED, finish_worker, kill_after, start_worker
from tests.integration.test_openmrs_pipeline import CHT_SYSTEM, PATIENTS, location_table

ITERATIONS = 4
NEW_PER_ITERATION = 15
DELAY = 0.01  # seconds per FHIR request at the stand-in


class _Target:
    """What ``start_worker``/``kill_after`` need of a receiver: its URL, login, and a request count."""

    def __init__(self, openmrs: OpenMrs) -> None:
        self.openmrs = openmrs
        self.url = openmrs.url
        self.credentials = {"username": openmrs.credentials[0], "password": openmrs.credentials[1]}

    def stats(self) -> dict[str, int]:
        return {"requests": len(self.openmrs.log)}


def pipeline(name: str, db: str, table: Path) -> dict:
    return {
        "name": name,
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht_crash", "db": db},
        "relevant_to": PATIENTS,
        "fhir": {
            "identifier_type": "CHT Document ID",
            "resources": [{"template": "patient", "from": "doc", "fields": {"organization": "doc.parent.parent"}}],
        },
        "destination": {
            "type": "openmrs",
            "conn_id": "openmrs_crash",
            "concurrency": 2,
            "timeout": 10,
            "openmrs": {"identifier_system": CHT_SYSTEM, "locations": str(table)},
        },
        "batch_size": 10,
        "delivery": {"retries": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    }


def people(cht) -> dict[str, dict]:
    return {d["_id"]: d for d in cht.all_docs() if d.get("type") == "person" and d.get("role") == "patient"}


@pytest.fixture
def state(tmp_path):
    from cht_bridge.state import StateStore

    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield store
    store.close()


def test_a_worker_killed_mid_run_and_run_again_leaves_one_patient_per_person(cht, state, tmp_path):
    rng = random.Random(f"{SEED}:openmrs")
    cht.seed(150, seed=SEED % 1000)
    table = location_table(cht.all_docs(), tmp_path / "emr_locations.csv")
    name = f"openmrs_crash_{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(pipeline(name, cht.db, table)))
    with OpenMrs(credentials=("admin", uuid.uuid4().hex), locations=table_locations(table)) as openmrs:
        openmrs.before = lambda method, path: time.sleep(DELAY)
        target = _Target(openmrs)
        unrecorded = []
        for iteration in range(ITERATIONS):
            context = f"[seed {SEED}, openmrs, iteration {iteration}]"
            known = list(people(cht).values())
            new = []
            for j in range(NEW_PER_ITERATION):
                doc = copy.deepcopy(rng.choice(known))
                doc.pop("_rev", None)
                doc["_id"] = f"crash-{iteration:02d}-{j:03d}-{rng.getrandbits(32):08x}"
                new.append(doc)
            edits = [{**copy.deepcopy(d), "name": f"{d['name']} {iteration}"} for d in rng.sample(known, 5)]
            cht.put(*new, *edits)
            before = len(openmrs.log)
            log = tmp_path / f"worker-{iteration}.log"
            proc = start_worker(config, cht.url, cht.user, target, state.url, log)
            kill_after(proc, target, before, rng.randint(4, 25), rng.uniform(0, DELAY), log, context)
            time.sleep(3 * DELAY + 0.05)  # what the dead worker left in flight finishes at the stand-in
            delivered = {
                doc_id for doc_id in people(cht) if (state.ledger(name, doc_id) or {}).get("status") == "delivered"
            }
            at_openmrs = {p["id"] for p in openmrs.resources("Patient")}
            unrecorded.append(
                len([i for i in people(cht) if resource_id("Patient", i) in at_openmrs and i not in delivered])
            )

        context = f"[seed {SEED}, openmrs, final run]"
        final_log = tmp_path / "final.log"
        summary = finish_worker(
            start_worker(config, cht.url, cht.user, target, state.url, final_log), final_log, context
        )
        assert summary["failed"] == 0 and summary["dead_lettered"] == 0, (context, summary)
        persons = people(cht)
        held = openmrs.resources("Patient")
        assert sorted(p["id"] for p in held) == sorted(resource_id("Patient", i) for i in persons), context
        session = requests.Session()
        session.auth = openmrs.credentials
        for doc_id in persons:
            found = session.get(f"{openmrs.fhir_url}/Patient", params={"identifier": doc_id}, timeout=10).json()
            assert found["total"] == 1, f"{context}: {found['total']} Patients carry the CHT id {doc_id}"
        assert state.counts(name) == {"delivered": len(persons)}, context
        names = {p["id"]: p["name"][0]["text"] for p in held}
        assert all(names[resource_id("Patient", i)] == d["name"] for i, d in persons.items()), context
        # Not vacuous: killed workers had left Patients created but not recorded; the re-run PUT them.
        assert sum(unrecorded) > 0, (context, unrecorded)
        assert not [r for r in openmrs.log if r[2] == 500], "no POST of an id that already existed"
        print(f"\n{context}: {len(persons)} persons; created but unrecorded after each kill: {unrecorded}")
