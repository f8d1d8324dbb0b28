"""``destination.type: fhir`` against the real local FHIR server (sekmet) and, for what sekmet never
answers (422, a per-entry refusal, a bare ``"201"`` status), a stand-in that follows
destinations.md §6.1 to the letter.

Each test names its resources with an identifier system of its own (``new_system``), so the shared
server needs no reset and every search is the test's alone.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import open_destination
from cht_bridge.destinations.base import Delivery
from cht_bridge.state import Outcome, StateStore
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json
from tests.integration.fhir_setup import fhir_session, new_system, patient, read, referral, referral_pipeline, search

pytestmark = pytest.mark.integration


def open_fhir(server: Any, system: str, **destination: Any):
    pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", system, **destination), file="test.yaml")
    return open_destination(fhir_session(server), server.url, pipeline.destination, pipeline.delivery)


def delivery(doc_id: str, resources: Any) -> Delivery:
    body = json.dumps(resources)
    return Delivery(doc_id, body, f"{doc_id}:{uuid.uuid5(uuid.NAMESPACE_URL, body).hex[:16]}")


def test_a_referral_whose_patient_was_never_sent_gets_its_patient_in_the_same_bundle(fhir_server):
    system = new_system()
    dest = open_fhir(fhir_server, system, batch_size=10)
    sent = dest.send(
        [
            delivery("r1", [patient(system, "a"), referral(system, "r1", "a")]),
            delivery("r2", [patient(system, "a"), referral(system, "r2", "a")]),  # the same patient: entered once
            delivery("r3", [patient(system, "b", "male"), referral(system, "r3", "b")]),
        ]
    )
    assert [r.ok for r in sent] == [True, True, True], sent
    assert dest.requests == 1  # one transaction for the batch
    patients = {p["identifier"][0]["value"]: p for p in search(fhir_server, "Patient", system)}
    assert sorted(patients) == ["a", "b"]  # one Patient each, never a dangling reference
    for result, subject in zip(sent, ["a", "a", "b"], strict=True):
        kind, _, server_id = result.destination_id.partition("/")
        assert kind == "ServiceRequest"  # the main (last) resource is the document's destination id
        stored = read(fhir_server, result.destination_id)
        assert stored["identifier"][0]["value"] == result.doc_id
        assert stored["subject"]["reference"] == f"Patient/{patients[subject]['id']}"  # urn:uuid rewritten
        assert server_id != f"sr-{result.doc_id}"  # conditional create: the server picked the id


def test_a_resend_finds_the_earlier_copies_and_an_edit_updates_the_same_resource(fhir_server):
    system = new_system()
    dest = open_fhir(fhir_server, system)
    first = dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a", priority="routine")])])
    again = dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a", priority="routine")])])
    assert first[0].destination_id == again[0].destination_id
    assert read(fhir_server, first[0].destination_id)["meta"]["versionId"] == "1"  # an unchanged copy is left alone
    requests_before = dest.requests
    edited = dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a", priority="urgent")])])
    assert edited[0].ok and edited[0].destination_id == first[0].destination_id
    assert dest.requests == requests_before + 2  # the conditional create found it, then one PUT over it
    stored = read(fhir_server, first[0].destination_id)
    assert stored["priority"] == "urgent" and stored["meta"]["versionId"] == "2"
    assert len(search(fhir_server, "ServiceRequest", system)) == 1
    assert len(search(fhir_server, "Patient", system)) == 1


def test_put_uses_the_deterministic_ids_and_may_refer_to_a_patient_the_ledger_holds(fhir_server, tmp_path):
    system = new_system()
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        dest = open_fhir(fhir_server, system, fhir={"identifier_system": system, "strategy": "put"})
        dest.use_ledger(store)
        (sent,) = dest.send([delivery("pa", [patient(system, "a")])])
        assert sent.destination_id == "Patient/p-a"
        # Before the ledger records it, a referral to it alone is refused: the server may not have it.
        (early,) = dest.send([delivery("r1", [referral(system, "r1", "a")])])
        assert not early.ok and "Patient/p-a, which is neither in this payload nor delivered" in early.error
        store.record("patients", [Outcome("pa", "1-a", True, destination_id=sent.destination_id)])
        results = dest.send(
            [delivery("r1", [referral(system, "r1", "a")]), delivery("r2", [referral(system, "r2", "a")])]
        )
        assert [r.destination_id for r in results] == ["ServiceRequest/sr-r1", "ServiceRequest/sr-r2"]
        again = dest.send([delivery("r1", [referral(system, "r1", "a", priority="urgent")])])
        assert again[0].destination_id == "ServiceRequest/sr-r1"
        assert read(fhir_server, "ServiceRequest/sr-r1")["priority"] == "urgent"
        assert len(search(fhir_server, "ServiceRequest", system)) == 2
        assert len(search(fhir_server, "Patient", system)) == 1
    finally:
        store.close()


def test_each_invalid_payload_is_refused_before_sending_with_the_reason(fhir_server):
    system = new_system()
    dest = open_fhir(fhir_server, system, batch_size=10)
    bad = {
        "gender": [patient(system, "g", gender="M"), referral(system, "rg", "g")],
        "dangling": [referral(system, "rd", "nobody")],
        "no_identifier": [{**patient(system, "i"), "identifier": []}, referral(system, "ri", "i")],
        "no_id": [{k: v for k, v in patient(system, "n").items() if k != "id"}],
        "unknown_key": [patient(system, "u", colour="blue")],
        "not_fhir": {"name": "x"},
    }
    reasons = {
        "gender": "Patient/p-g: gender 'M' is not one of male, female, other, unknown",
        "dangling": "subject refers to Patient/p-nobody, which is neither in this payload nor delivered",
        "no_identifier": f"Patient/p-i: no identifier in system {system}",
        "no_id": "Patient (resource 0): no id",
        "unknown_key": "Patient/p-u: colour",
        "not_fhir": "resource 0: not a FHIR resource (no resourceType)",
    }
    deliveries = [delivery(name, body) for name, body in bad.items()]
    deliveries.insert(3, delivery("good", [patient(system, "ok"), referral(system, "rok", "ok")]))
    results = {r.doc_id: r for r in dest.send(deliveries)}
    assert results["good"].ok
    for name, reason in reasons.items():
        result = results[name]
        assert not result.ok and not result.retryable and result.attempts == 0, result
        assert result.error.startswith("invalid FHIR payload: ") and reason in result.error, result.error
    assert dest.requests == 1  # only the good one was sent
    sent = {p["identifier"][0]["value"] for p in search(fhir_server, "Patient", system)}
    assert sent == {"ok"}  # nothing invalid reached the server


def test_a_bundle_one_document_spoils_is_bisected_and_only_that_one_refused(fhir_server):
    system = new_system()
    with fhir_server.session() as session:  # two Patients already share one CHT id: a 412 for it
        for _ in range(2):
            session.post(f"{fhir_server.url}/Patient", json=patient(system, "dup"), timeout=30).raise_for_status()
    dest = open_fhir(fhir_server, system, batch_size=10)
    names = [f"r{i}" for i in range(6)]
    deliveries = [delivery(n, [patient(system, f"p{n}"), referral(system, n, f"p{n}")]) for n in names]
    deliveries[4] = delivery("r4", [patient(system, "dup"), referral(system, "r4", "dup")])
    results = dest.send(deliveries)
    assert [r.ok for r in results] == [True, True, True, True, False, True], results
    assert results[4].status == 412 and "multiple-matches" in results[4].error and not results[4].retryable
    assert dest.requests > 1  # sent again in halves
    assert {s["identifier"][0]["value"] for s in search(fhir_server, "ServiceRequest", system)} == set(names) - {"r4"}


def test_a_deleted_document_deletes_its_main_resource(fhir_server):
    from cht_bridge.config.model import Deletes

    system = new_system()
    dest = open_fhir(fhir_server, system)
    (sent,) = dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a")])])
    (gone,) = dest.send([dest.deletion("r1", sent.destination_id, "del-r1", Deletes(action="send"))])
    assert gone.ok, gone
    assert search(fhir_server, "ServiceRequest", system) == []
    assert len(search(fhir_server, "Patient", system)) == 1


# -- what sekmet never answers: a stand-in keeping destinations.md §6.1 ------------------------------


class ContractFhir(BackgroundHttpServer):
    """A transaction endpoint as §6.1 describes one: 422 OperationOutcome for the whole bundle when an
    entry breaks a business rule (here: a ``stat`` ServiceRequest without a performer), a
    ``transaction-response`` with bare ``"201"`` statuses otherwise, and a per-entry ``outcome``
    refusal for a resource the stand-in is told to refuse inside an accepted bundle."""

    def __init__(self) -> None:
        super().__init__()
        self.bundles: list[dict] = []
        self.refuse_entry: str | None = None  # an identifier value answered 409 inside a 200 bundle
        self.interactions = ["transaction", "batch"]  # what its CapabilityStatement lists
        self.down = False  # answer every transaction 503

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_GET(self):
                interactions = [{"code": code} for code in server.interactions]
                send_json(self, 200, {"resourceType": "CapabilityStatement", "rest": [{"interaction": interactions}]})

            def do_POST(self):
                bundle = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bundles.append(bundle)
                if server.down:
                    send_json(
                        self,
                        503,
                        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]},
                    )
                    return
                resources = [e["resource"] for e in bundle["entry"]]
                if any(r.get("priority") == "stat" and not r.get("performer") for r in resources):
                    outcome = {
                        "severity": "error",
                        "code": "business-rule",
                        "diagnostics": "a stat referral needs a performer",
                    }
                    send_json(self, 422, {"resourceType": "OperationOutcome", "issue": [outcome]})
                    return
                entries = []
                for r in resources:
                    value = r["identifier"][0]["value"]
                    if value == server.refuse_entry:
                        outcome = {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {"severity": "error", "code": "conflict", "diagnostics": "held by another record"}
                            ],
                        }
                        entries.append({"response": {"status": "409", "outcome": outcome}})
                    else:
                        entries.append(
                            {"response": {"status": "201", "location": f"{r['resourceType']}/srv-{value}/_history/1"}}
                        )
                send_json(self, 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries})

        return Handler


@pytest.fixture
def contract_fhir():
    server = ContractFhir().start()
    yield server
    server.stop()


def test_a_422_refuses_only_its_document_and_bare_statuses_are_read(contract_fhir):
    system = new_system()
    pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", system, batch_size=10), file="test.yaml")
    import requests

    dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
    dest.check()
    deliveries = [delivery(f"r{i}", [patient(system, f"p{i}"), referral(system, f"r{i}", f"p{i}")]) for i in range(4)]
    deliveries[2] = delivery("r2", [patient(system, "p2"), referral(system, "r2", "p2", priority="stat")])
    results = dest.send(deliveries)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].status == 422 and "business-rule: a stat referral needs a performer" in results[2].error
    assert results[0].destination_id == "ServiceRequest/srv-r0"  # from a bare "201" and its location
    assert len(contract_fhir.bundles) > 1  # bisected
    first = contract_fhir.bundles[0]["entry"]
    assert first[0]["request"] == {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={system}|p0"}
    assert first[1]["resource"]["subject"]["reference"] == first[0]["fullUrl"]  # the urn:uuid of its Patient

    contract_fhir.refuse_entry = "r5"
    results = dest.send([delivery("r5", [patient(system, "p5"), referral(system, "r5", "p5")]), deliveries[0]])
    assert not results[0].ok and results[0].status == 409 and "conflict: held by another record" in results[0].error
    assert results[1].ok


def test_refused_credentials_stop_at_the_first_bundle(fhir_server):
    from cht_bridge.errors import AuthError

    system = new_system()
    pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", system), file="test.yaml")
    import requests

    session = requests.Session()
    session.auth = (fhir_server.credentials[0], "wrong")
    dest = open_destination(session, fhir_server.url, pipeline.destination, pipeline.delivery)
    dest.check()  # the CapabilityStatement is public (as R4 allows): the pre-flight cannot see the password
    with pytest.raises(AuthError):
        dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a")])])
    assert dest.requests == 1 and search(fhir_server, "Patient", system) == []


def test_a_server_without_transactions_fails_the_pre_flight(contract_fhir):
    import requests

    from cht_bridge.errors import PreflightError

    pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", new_system()), file="test.yaml")
    dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
    contract_fhir.interactions = ["batch", "history-system"]
    with pytest.raises(PreflightError, match="no 'transaction' interaction"):
        dest.check()
    assert contract_fhir.bundles == []


def test_when_the_breaker_opens_the_payloads_refused_unsent_are_still_finished(contract_fhir):
    import requests

    from cht_bridge.errors import CircuitOpenError

    system = new_system()
    config = referral_pipeline("fhir_dest", "medic", system)
    config["delivery"] = {"retries": 1, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "breaker_after": 2}
    pipeline = parse_pipeline(config, file="test.yaml")
    dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
    contract_fhir.down = True
    good = delivery("r1", [patient(system, "a"), referral(system, "r1", "a")])
    bad = delivery("r2", [patient(system, "b", gender="M"), referral(system, "r2", "b")])
    with pytest.raises(CircuitOpenError) as caught:
        dest.send([good, bad])
    assert [(r.doc_id, r.ok, r.retryable) for r in caught.value.results] == [("r2", False, False)]
    assert "gender 'M'" in caught.value.results[0].error
    assert all(
        e["resource"]["identifier"][0]["value"] in ("a", "r1") for b in contract_fhir.bundles for e in b["entry"]
    )
