"""A referral pipeline into the real local FHIR server, run by the product's own run code from CHT
(pouchdb-server): the ledger keeps each refused payload's reason, and a worker SIGKILLed in the
middle of a run leaves, after a re-run, exactly one Patient per CHT person and one ServiceRequest
per referral at the server.

The killed worker is the crash-safety test's child process (``test_crash_safety.start_worker``):
it opens what the sync task opens (``sync.resources``) and runs ``run_pipeline``.
"""

from __future__ import annotations

import copy
import json
import random
import signal
import time
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest

from cht_bridge.config import parse_pipeline
from cht_bridge.state import StateStore
from tests.integration.fhir_setup import new_system, read, referral_pipeline, search
from tests.integration.test_crash_safety import finish_worker, start_worker

pytestmark = pytest.mark.integration

SEED = 4242


def referrals(docs: list[dict]) -> dict[str, dict]:
    return {
        d["_id"]: d
        for d in docs
        if d.get("type") == "data_record" and d.get("form") == "assessment" and d["fields"].get("referral") == "yes"
    }


def add_referrals(cht, n: int, rng: random.Random, patients: int = 15) -> None:
    """``n`` more referrals, over ``patients`` of the seeded patients (so referrals share Patients)."""
    docs = cht.all_docs()
    template = next(iter(referrals(docs).values()))
    people = sorted(
        (d for d in docs if d.get("type") == "person" and d.get("role") == "patient"), key=lambda d: d["_id"]
    )
    chosen = rng.sample(people, patients)
    new = []
    for i in range(n):
        doc = copy.deepcopy(template)
        doc.pop("_rev")
        person = chosen[i % patients]
        doc["_id"] = f"fhir-ref-{i:03d}-{rng.getrandbits(32):08x}"
        doc["fields"].update(patient_uuid=person["_id"], patient_id=person["patient_id"], patient_name=person["name"])
        new.append(doc)
    assert not [r for r in cht.put(*new) if "error" in r]


def referral_report(doc_id: str, person: str, minute: int = 0, **fields) -> dict:
    """An assessment that ended in a referral of ``person`` (the people of ``reverse_setup.seed_area``)."""
    return {
        "_id": doc_id,
        "type": "data_record",
        "form": "assessment",
        "reported_date": 1767225600000 + minute * 60_000,
        "fields": {"referral": "yes", "patient_uuid": person, "symptoms": "fever", **fields},
    }


def fhir_receiver(fhir) -> SimpleNamespace:
    """The FHIR server in the shape ``start_worker`` reads its destination from."""
    user, password = fhir.credentials
    return SimpleNamespace(url=fhir.url, credentials={"username": user, "password": password})


def server_total(fhir, resource_type: str, system: str) -> int:
    with fhir.session() as session:
        r = session.get(f"{fhir.url}/{resource_type}", params={"identifier": f"{system}|", "_count": 1}, timeout=30)
    r.raise_for_status()
    return r.json()["total"]


def test_a_pipeline_sigkilled_mid_run_and_run_again_creates_no_second_patient(cht, fhir_server, tmp_path):
    rng = random.Random(SEED)
    cht.seed(200, seed=SEED % 1000)
    add_referrals(cht, 60, rng)
    expected = referrals(cht.all_docs())
    system = new_system()
    name = f"fhir_crash_{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(referral_pipeline(name, cht.db, system)))
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    receiver = fhir_receiver(fhir_server)
    unrecorded = []  # per kill: copies at the server the ledger did not know of
    try:
        for attempt in range(3):
            kill_at = rng.randint(4, 40)  # referrals at the server (seeded: the same points every time)
            log = tmp_path / f"worker-{attempt}.log"
            proc = start_worker(config, cht.url, cht.user, receiver, store.url, log)
            deadline = time.monotonic() + 120
            while True:  # kill while the server holds referrals the ledger has not recorded yet
                assert proc.poll() is None, f"the worker ended before the kill; log:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the worker never got going"
                at_server = server_total(fhir_server, "ServiceRequest", system)
                if at_server > store.counts(name).get("delivered", 0) and at_server >= kill_at:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
            assert proc.returncode == -signal.SIGKILL
            at_server = server_total(fhir_server, "ServiceRequest", system)
            unrecorded.append(at_server - store.counts(name).get("delivered", 0))
            assert at_server < len(expected), "the worker had finished before the kill"
            if unrecorded[-1] > 0:
                break
        assert max(unrecorded) > 0, f"no kill left a created referral unrecorded: {unrecorded}"
        print(f"\nkills: referrals at the server the ledger had not recorded: {unrecorded} of {len(expected)} ")

        summary = finish_worker(
            start_worker(config, cht.url, cht.user, receiver, store.url, tmp_path / "final.log"),
            tmp_path / "final.log",
            "final run",
        )
        assert summary["failed"] == 0 and summary["dead_lettered"] == 0, summary
        assert store.counts(name) == {"delivered": len(expected)}

        requests_at = Counter(s["identifier"][0]["value"] for s in search(fhir_server, "ServiceRequest", system))
        assert requests_at == Counter(set(expected)), "one ServiceRequest per referral, none twice"
        persons = {d["fields"]["patient_uuid"] for d in expected.values()}
        for person in persons:  # a search by the CHT identifier returns exactly one Patient
            assert len(search(fhir_server, "Patient", system, person)) == 1, person
        assert server_total(fhir_server, "Patient", system) == len(persons)
        for doc_id in list(expected)[:5]:  # the ledger's destination id is the ServiceRequest the server made
            row = store.ledger(name, doc_id)
            (stored,) = search(fhir_server, "ServiceRequest", system, doc_id)
            assert row["destination_id"] == f"ServiceRequest/{stored['id']}"
    finally:
        store.close()


def test_an_invalid_payload_is_a_dead_letter_with_its_reason_and_never_sent(cht, fhir_server, tmp_path):
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened

    cht.seed(120, seed=11)
    docs = cht.all_docs()
    template = next(iter(referrals(docs).values()))
    parent = next(d for d in docs if d.get("type") == "person" and d.get("role") == "patient")["parent"]
    person = {
        "_id": "fhir-bad-sex",
        "type": "person",
        "role": "patient",
        "name": "Test Person",
        "sex": "M",
        "parent": parent,
    }
    bad = copy.deepcopy(template)
    bad.pop("_rev")
    bad["_id"] = "fhir-bad-referral"
    bad["fields"].update(patient_uuid=person["_id"], patient_name=person["name"])
    bad["fields"].pop("patient_id", None)
    assert not [r for r in cht.put(person, bad) if "error" in r]
    system = new_system()
    pipeline = parse_pipeline(referral_pipeline("fhir_invalid", cht.db, system), file="fhir_invalid.yaml")
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    user, password = fhir_server.credentials
    with opened(
        pipeline,
        cht=Endpoint(cht.url, cht.user),
        destination=Endpoint(fhir_server.url, (user, password)),
        state_url=state_url,
    ) as r:
        summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        row = r.store.ledger(pipeline.name, "fhir-bad-referral")
        assert row["status"] == "dead"
        assert (
            "invalid FHIR payload: Patient/p-fhir-bad-sex: gender 'M' is not one of male, female, other, unknown"
            in row["last_error"]
        )
        assert summary.dead_lettered == 1 and summary.sent == len(referrals(docs))
    assert search(fhir_server, "ServiceRequest", system, "fhir-bad-referral") == []
    assert search(fhir_server, "Patient", system, "fhir-bad-sex") == []
    assert len(search(fhir_server, "ServiceRequest", system)) == len(referrals(docs))


def test_the_example_referral_pipeline_sends_templated_resources_once_and_updates_an_edit(cht, fhir_server, tmp_path):
    """``include/pipelines/referrals_to_fhir.yaml`` (FHIR templates), as ``make demo`` runs it."""
    from dataclasses import replace

    from cht_bridge.config import load_pipeline
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened
    from standins.fhir_demo import PIPELINE, created

    cht.seed(150, seed=23)
    example = load_pipeline(PIPELINE)
    system = new_system()  # this test's own system on the shared server
    pipeline = replace(
        example,
        name=f"referrals_to_fhir_{uuid.uuid4().hex[:6]}",
        cht_db=cht.db,
        fhir=replace(example.fhir, identifier_system=system),
        destination=replace(  # write_back has its own tests (below, and as an Airflow DAG run)
            example.destination,
            settings=replace(example.destination.settings, identifier_system=system, write_back=None),
        ),
    )
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    ends = {"cht": Endpoint(cht.url, cht.user), "destination": Endpoint(fhir_server.url, fhir_server.credentials)}

    def run():
        with opened(pipeline, state_url=state_url, **ends) as r:
            return run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)

    expected = referrals(cht.all_docs())
    first = run()
    assert first.sent == len(expected) > 0 and first.dead_lettered == 0 and first.failed == 0, first
    counted = created(fhir_server, PIPELINE)  # the demo's printing, here by the example's own system
    assert counted["system"] == example.destination.settings.identifier_system
    requests_at = search(fhir_server, "ServiceRequest", system)
    assert sorted(s["identifier"][0]["value"] for s in requests_at) == sorted(expected)
    persons = {d["fields"]["patient_uuid"] for d in expected.values()}
    chws = {d["contact"]["_id"] for d in expected.values()}
    assert sorted(p["identifier"][0]["value"] for p in search(fhir_server, "Patient", system)) == sorted(persons)
    assert len(search(fhir_server, "Practitioner", system)) == len(chws)
    for request in requests_at:  # references rewritten to the server's ids, and they resolve
        assert read(fhir_server, request["subject"]["reference"])["resourceType"] == "Patient"
        assert read(fhir_server, request["requester"]["reference"])["resourceType"] == "Practitioner"

    assert run().sent == 0  # nothing changed: nothing sent
    doc = cht.get(next(iter(expected)))
    doc["fields"]["symptoms"] = "fever cough"
    cht.put(doc)
    edited = run()
    assert edited.sent == 1, edited
    (request,) = search(fhir_server, "ServiceRequest", system, doc["_id"])
    assert request["reasonCode"][0]["text"] == "fever, cough" and request["meta"]["versionId"] == "2"
    assert len(search(fhir_server, "ServiceRequest", system)) == len(expected)


def test_write_back_puts_the_emr_patient_id_on_the_cht_person_once(cht_api, fhir_server, tmp_path):
    """The EMR's Patient id lands in the CHT person through the CHT API (``PUT /api/v1/person``),
    once per person: a second referral, a re-run, or a fresh ledger re-sending everything writes nothing."""
    from cht_bridge.cht.api import ChtApiClient
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened
    from tests.integration.reverse_setup import seed_area

    db = cht_api.db
    seed_area(db)
    reports = [
        referral_report(f"wb-ref-{i}", person, i) for i, person in enumerate(["p-achieng", "p-brian", "p-achieng"])
    ]
    db.put(*reports)
    revs = {p: db.get(p)["_rev"] for p in ("p-achieng", "p-brian")}
    system = new_system()
    write_back = {"field": "emr_patient_id", "conn_id": "cht_api_test"}
    config = referral_pipeline(
        "fhir_write_back", db.db, system, fhir={"identifier_system": system, "write_back": write_back}
    )
    pipeline = parse_pipeline(config, file="fhir_write_back.yaml")

    def run(state: str):
        ends = {"cht": Endpoint(db.url, db.user), "destination": Endpoint(fhir_server.url, fhir_server.credentials)}
        with opened(pipeline, state_url=f"sqlite:///{tmp_path / state}", **ends) as r:
            r.destination.use_cht_api(ChtApiClient(cht_api.url, db.db, cht_api.online, conn_id="cht_api_test"))
            return run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)

    first = run("state.sqlite")
    assert first.sent == 3 and first.failed == 0 and first.dead_lettered == 0, first
    for person in revs:
        (patient,) = search(fhir_server, "Patient", system, person)
        stored = db.get(person)
        assert stored["emr_patient_id"] == patient["id"]
        assert int(stored["_rev"].split("-")[0]) == int(revs[person].split("-")[0]) + 1, "written once"
        assert stored["name"] and stored["parent"] == db.get(person)["parent"]  # the rest of the person kept
    written = {p: db.get(p)["_rev"] for p in revs}
    again = run("fresh.sqlite")  # everything sent again (as after a lost ledger): FHIR finds it, CHT holds it
    assert again.sent == 3
    assert {p: db.get(p)["_rev"] for p in revs} == written


def test_the_example_pipeline_as_an_airflow_dag_run_sends_and_writes_the_emr_id_back(
    cht_api, fhir_server, monkeypatch, airflow_db, tmp_path
):
    """``referrals_to_fhir.yaml`` through Airflow's ``dag.test()``: its Connections (CHT, the FHIR
    server, the CHT API of ``write_back``) opened by the hooks, as ``make demo`` runs it."""
    import yaml

    from standins.fhir_demo import PIPELINE
    from tests.integration.dagrun import run_dag
    from tests.integration.reverse_setup import DH, HC, seed_area

    db = cht_api.db
    seed_area(db)
    chw = {
        "_id": "chw-1",
        "type": "person",
        "name": "CHW One",
        "sex": "female",
        "parent": {"_id": HC, "parent": {"_id": DH}},
    }
    contact = {"_id": "chw-1", "parent": {"_id": HC, "parent": {"_id": DH}}}
    reports = [
        {**referral_report(f"dag-ref-{i}", person, i, temperature=39.8), "contact": contact}
        for i, person in enumerate(["p-achieng", "p-odhiambo"])
    ]
    db.put(chw, *reports)
    system = new_system()
    config = yaml.safe_load(PIPELINE.read_text())
    name = f"referrals_to_fhir_{uuid.uuid4().hex[:6]}"
    config.update(name=name, schedule=None, retries=0, cht={"conn_id": "cht_test", "db": db.db})
    config["destination"].update(conn_id="fhir_test")
    config["destination"]["fhir"].update(
        identifier_system=system, write_back={"field": "emr_patient_id", "conn_id": "cht_api_test"}
    )
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    user, password = fhir_server.credentials
    login, secret = cht_api.online
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", db.connection())
    monkeypatch.setenv(
        "AIRFLOW_CONN_FHIR_TEST",
        json.dumps({"conn_type": "http", "host": fhir_server.url, "login": user, "password": password}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CHT_API_TEST",
        json.dumps({"conn_type": "http", "host": cht_api.url, "login": login, "password": secret}),
    )

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] == 2 and summary["dead_lettered"] == 0, summary
    for report in reports:
        (request,) = search(fhir_server, "ServiceRequest", system, report["_id"])
        assert request["priority"] == "urgent"
        patient = read(fhir_server, request["subject"]["reference"])
        assert db.get(report["fields"]["patient_uuid"])["emr_patient_id"] == patient["id"]
    assert len(search(fhir_server, "Practitioner", system)) == 1  # the CHW of both referrals, entered once


def test_a_write_back_that_fails_leaves_the_referral_failed_and_the_next_run_writes_it(cht_api, fhir_server, tmp_path):
    from cht_bridge.cht.api import ChtApiClient
    from cht_bridge.http.retry import RetryPolicy
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened
    from tests.integration.reverse_setup import seed_area

    db = cht_api.db
    seed_area(db)
    report = referral_report("wb-fail-1", "p-brian", symptoms="cough")
    db.put(report)
    system = new_system()
    write_back = {"field": "emr_patient_id", "conn_id": "cht_api_test"}
    config = referral_pipeline(
        "fhir_wb_fail", db.db, system, fhir={"identifier_system": system, "write_back": write_back}
    )
    pipeline = parse_pipeline(config, file="fhir_wb_fail.yaml")
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"

    def run():
        ends = {"cht": Endpoint(db.url, db.user), "destination": Endpoint(fhir_server.url, fhir_server.credentials)}
        with opened(pipeline, state_url=state_url, **ends) as r:
            api = ChtApiClient(cht_api.url, db.db, cht_api.online, conn_id="cht_api_test", retry=RetryPolicy(retries=0))
            r.destination.use_cht_api(api)
            summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
            return summary, r.store.ledger(pipeline.name, "wb-fail-1")

    cht_api.api.stop()  # CHT's API is down: the referral reaches the EMR, its patient id cannot come back yet
    try:
        summary, row = run()
    finally:
        cht_api.api.start()
    assert summary.failed == 1 and row["status"] == "failed", (summary, row)
    assert "delivered, but reading the CHT person for write_back failed" in row["last_error"]
    assert len(search(fhir_server, "ServiceRequest", system, "wb-fail-1")) == 1  # it is at the EMR
    assert "emr_patient_id" not in db.get("p-brian")

    summary, row = run()  # the next run sends it again (a no-op at the EMR) and writes the id back
    assert summary.failed == 0 and row["status"] == "delivered", (summary, row)
    (patient,) = search(fhir_server, "Patient", system, "p-brian")
    assert db.get("p-brian")["emr_patient_id"] == patient["id"]
    assert len(search(fhir_server, "ServiceRequest", system, "wb-fail-1")) == 1
