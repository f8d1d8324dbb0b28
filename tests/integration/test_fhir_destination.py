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


PIPE = "fhir_dest"


def ledgered(doc_id: str, resources: Any) -> tuple[Delivery, str]:
    """A delivery keyed as the sync run keys it (pipeline, document, payload hash), and that hash."""
    from cht_bridge.mapping.hashing import idempotency_key, payload_hash

    digest = payload_hash(json.dumps(resources, sort_keys=True, separators=(",", ":")))
    return Delivery(doc_id, json.dumps(resources), idempotency_key(PIPE, doc_id, digest)), digest


def send_and_record(dest: Any, store: StateStore, doc_id: str, resources: Any) -> Any:
    """Send one document and record its outcome in the ledger, as the sync run does."""
    item, digest = ledgered(doc_id, resources)
    (result,) = dest.send([item])
    store.record(PIPE, [Outcome(doc_id, "1", result.ok, digest, destination_id=result.destination_id)])
    return result


def test_conditional_leaves_the_emrs_copy_alone_unless_cht_edited_it_and_then_keeps_what_the_emr_added(
    fhir_server, tmp_path
):
    system = new_system()
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        dest = open_fhir(fhir_server, system)
        dest.use_ledger(store.for_destination(PIPE))
        payload = [patient(system, "a"), referral(system, "r1", "a", priority="routine")]
        first = send_and_record(dest, store, "r1", payload)
        requests_before = dest.requests
        again = send_and_record(dest, store, "r1", payload)  # a replay of the same payload
        assert again.destination_id == first.destination_id and dest.requests == requests_before + 1
        assert read(fhir_server, first.destination_id)["meta"]["versionId"] == "1"  # an unchanged copy is left alone

        # The EMR adds its own MRN and an email to the Patient; then a referral never delivered
        # before matches that Patient with other content: conditional create never updates (§6.1).
        (emr_patient,) = search(fhir_server, "Patient", system)
        emr_patient["identifier"].append({"system": "urn:emr:mrn", "value": "MRN-1"})
        emr_patient["telecom"] = [{"system": "email", "value": "a@example.org"}]
        with fhir_server.session() as session:
            put = session.put(f"{fhir_server.url}/Patient/{emr_patient['id']}", json=emr_patient, timeout=30)
            put.raise_for_status()
        version = read(fhir_server, f"Patient/{emr_patient['id']}")["meta"]["versionId"]
        other = send_and_record(dest, store, "r2", [patient(system, "a", gender="other"), referral(system, "r2", "a")])
        assert other.ok
        kept = read(fhir_server, f"Patient/{emr_patient['id']}")
        assert kept["meta"]["versionId"] == version and kept["gender"] == "female"

        # An edit in CHT of a delivered document updates its resources, keeping what the EMR added.
        requests_before = dest.requests
        edited = send_and_record(
            dest, store, "r1", [patient(system, "a", gender="other"), referral(system, "r1", "a", priority="urgent")]
        )
        assert edited.ok and edited.destination_id == first.destination_id
        assert dest.requests == requests_before + 2  # the conditional create found it, then one PUT over it
        stored = read(fhir_server, first.destination_id)
        assert stored["priority"] == "urgent" and stored["meta"]["versionId"] == "2"
        merged = read(fhir_server, f"Patient/{emr_patient['id']}")
        assert merged["gender"] == "other"
        assert {"system": "urn:emr:mrn", "value": "MRN-1"} in merged["identifier"]
        assert merged["telecom"] == [{"system": "email", "value": "a@example.org"}]
        assert len(search(fhir_server, "ServiceRequest", system)) == 2
        assert len(search(fhir_server, "Patient", system)) == 1
    finally:
        store.close()


def test_put_uses_the_deterministic_ids_and_may_refer_to_a_patient_the_ledger_holds(fhir_server, tmp_path):
    system = new_system()
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        dest = open_fhir(fhir_server, system, fhir={"identifier_system": system, "strategy": "put"})
        dest.use_ledger(store.for_destination("fhir_dest", ["patients"]))
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
        self.paths: list[tuple[str, str]] = []  # (method, path) of every request

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_DELETE(self):
                server.paths.append(("DELETE", self.path))
                send_json(self, 200, {"resourceType": "OperationOutcome", "issue": []})

            def do_GET(self):
                server.paths.append(("GET", self.path))
                interactions = [{"code": code} for code in server.interactions]
                send_json(self, 200, {"resourceType": "CapabilityStatement", "rest": [{"interaction": interactions}]})

            def do_POST(self):
                bundle = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.paths.append(("POST", self.path))
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


# -- review fixes: answers that are not a transaction-response, odd shapes, the base path, conditional edits ----


class LoginPage(BackgroundHttpServer):
    """A proxy in front of the FHIR server that wants a login: every request gets ``200 text/html``."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.posts += 1
                body = b"<html><body>Please log in</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def test_a_200_that_is_not_a_transaction_response_is_not_delivered():
    import requests

    server = LoginPage().start()
    try:
        system = new_system()
        pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", system, batch_size=10), file="test.yaml")
        dest = open_destination(requests.Session(), server.url, pipeline.destination, pipeline.delivery)
        results = dest.send(
            [delivery(f"r{i}", [patient(system, f"p{i}"), referral(system, f"r{i}", f"p{i}")]) for i in range(3)]
        )
        for result in results:
            assert not result.ok and not result.retryable and result.destination_id is None, result
            assert "text/html" in result.error and "not a FHIR transaction-response Bundle" in result.error
            assert "destination.path" in result.error  # says what a person must check
        assert server.posts == 1  # refused, not bisected nor retried: the same page would come back
        from cht_bridge.errors import PreflightError

        with pytest.raises(PreflightError, match=r"GET /metadata answered HTTP 200 \(text/html\), not a FHIR"):
            dest.check()  # the pre-flight sees the same page and stops the run before anything is sent
    finally:
        server.stop()


def test_odd_payload_shapes_are_refused_for_that_document_and_the_rest_delivered(contract_fhir):
    import requests

    system = new_system()
    pipeline = parse_pipeline(referral_pipeline("fhir_dest", "medic", system, batch_size=10), file="test.yaml")
    dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
    odd = {
        "number": [{**patient(system, "n"), "identifier": 5}],
        "strings": [{**patient(system, "s"), "identifier": ["abc"]}],
        "reference": [patient(system, "f"), {**referral(system, "rf", "f"), "subject": {"reference": 7}}],
    }
    deliveries = [delivery(name, body) for name, body in odd.items()]
    deliveries.append(delivery("good", [patient(system, "g"), referral(system, "rg", "g")]))
    results = {r.doc_id: r for r in dest.send(deliveries)}
    assert results["good"].ok
    for name in odd:
        assert not results[name].ok and not results[name].retryable and results[name].attempts == 0, results[name]
        assert results[name].error.startswith("invalid FHIR payload: ")
    assert len(contract_fhir.bundles) == 1 and len(contract_fhir.bundles[0]["entry"]) == 2  # the good one only


def test_destination_path_is_the_fhir_base_for_the_pre_flight_put_full_urls_and_deletes(contract_fhir):
    import requests

    from cht_bridge.config.model import Deletes

    system = new_system()
    pipeline = parse_pipeline(
        referral_pipeline(
            "fhir_dest", "medic", system, path="/fhir", fhir={"identifier_system": system, "strategy": "put"}
        ),
        file="test.yaml",
    )
    dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
    contract_fhir.interactions = ["batch"]
    with pytest.raises(Exception, match="no 'transaction' interaction"):
        dest.check()  # it read /fhir/metadata
    assert contract_fhir.paths[-1] == ("GET", "/fhir/metadata")
    (sent,) = dest.send([delivery("r1", [patient(system, "a"), referral(system, "r1", "a")])])
    assert contract_fhir.paths[-1] == ("POST", "/fhir")
    assert [e["fullUrl"] for e in contract_fhir.bundles[-1]["entry"]] == [
        f"{contract_fhir.url}/fhir/Patient/p-a",
        f"{contract_fhir.url}/fhir/ServiceRequest/sr-r1",
    ]
    dest.send([dest.deletion("r1", "ServiceRequest/sr-r1", "del-r1", Deletes(action="send"))])
    assert contract_fhir.paths[-1] == ("DELETE", "/fhir/ServiceRequest/sr-r1")


class HapiLikeFhir(BackgroundHttpServer):
    """Conditional create as §6.1 says, answered as HAPI does by default: ``entry.response`` only,
    no ``entry.resource``. Keeps resources in memory; ``GET Type/id`` reads one."""

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[str, dict] = {}  # "Type/id" -> resource
        self.calls: list[tuple[str, str]] = []  # (method, path); a transaction's entries as (method, url)

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_GET(self):
                server.calls.append(("GET", self.path))
                found = server.store.get(self.path.strip("/"))
                send_json(self, 200 if found else 404, found or {"resourceType": "OperationOutcome", "issue": []})

            def do_POST(self):
                bundle = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answers, urls = [], {}  # fullUrl -> "Type/id": urn:uuid references rewritten, as §6.1 says
                for entry in bundle["entry"]:
                    request, text = entry["request"], json.dumps(entry["resource"])
                    for url, location in urls.items():
                        text = text.replace(f'"{url}"', f'"{location}"')
                    resource = json.loads(text)
                    server.calls.append((request["method"], request["url"]))
                    if request["method"] == "PUT":
                        server.store[request["url"]] = resource
                        answers.append({"response": {"status": "200 OK", "location": f"{request['url']}/_history/2"}})
                        continue
                    wanted = request["ifNoneExist"].split("|", 1)[1]
                    match = next(
                        (k for k, r in server.store.items() if k.startswith(request["url"] + "/")
                         and any(i.get("value") == wanted for i in r.get("identifier", []))),
                        None,
                    )  # fmt: skip
                    if match is None:
                        match = f"{request['url']}/srv{len(server.store)}"
                        server.store[match] = {**resource, "id": match.split("/")[1]}
                        status = "201 Created"
                    else:
                        status = "200 OK"
                    urls[entry["fullUrl"]] = match
                    answers.append({"response": {"status": status, "location": f"{match}/_history/1"}})
                send_json(self, 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": answers})

        return Handler


def test_without_entry_resources_an_unchanged_copy_is_not_put_again_and_an_edit_is_merged(tmp_path):
    import requests

    server = HapiLikeFhir().start()
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        system = new_system()
        pipeline = parse_pipeline(referral_pipeline(PIPE, "medic", system), file="test.yaml")
        dest = open_destination(requests.Session(), server.url, pipeline.destination, pipeline.delivery)
        dest.use_ledger(store.for_destination(PIPE))
        payload = [patient(system, "a"), referral(system, "r1", "a")]
        first = send_and_record(dest, store, "r1", payload)
        assert first.ok and first.destination_id == "ServiceRequest/srv1"
        for _ in range(3):  # replays of the same payload: the answer carries no resource, the ledger decides
            assert send_and_record(dest, store, "r1", payload).ok
        assert [m for m, _ in server.calls].count("PUT") == 0 and ("GET", "/Patient/srv0") not in server.calls
        server.store["Patient/srv0"]["identifier"].append({"system": "urn:emr:mrn", "value": "MRN-7"})
        edited = send_and_record(dest, store, "r1", [patient(system, "a", gender="male"), referral(system, "r1", "a")])
        assert edited.ok
        assert ("GET", "/Patient/srv0") in server.calls  # read to merge over
        merged = server.store["Patient/srv0"]
        assert merged["gender"] == "male" and {"system": "urn:emr:mrn", "value": "MRN-7"} in merged["identifier"]
        assert [m for m, _ in server.calls].count("PUT") == 1  # only the changed Patient
    finally:
        store.close()
        server.stop()


def test_a_reference_is_known_only_when_a_pipeline_to_the_same_connection_delivered_it(contract_fhir, tmp_path):
    import requests
    import yaml

    from cht_bridge.config import load_pipeline
    from cht_bridge.sync.resources import peers

    system = new_system()
    for name, conn_id in (("hapi_referrals", "fhir_test"), ("hapi_patients", "fhir_test"), ("emr_patients", "emr")):
        config = referral_pipeline(name, "medic", system)
        config["destination"]["conn_id"] = conn_id
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    pipeline = load_pipeline(tmp_path / "hapi_referrals.yaml")
    assert peers(pipeline) == ["hapi_patients"]
    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        store.record("emr_patients", [Outcome("a", "1", True, destination_id="Patient/p-a")])
        store.record("hapi_patients", [Outcome("b", "1", True, destination_id="Patient/p-b")])
        dest = open_destination(requests.Session(), contract_fhir.url, pipeline.destination, pipeline.delivery)
        dest.use_ledger(store.for_destination(pipeline.name, peers(pipeline)))
        elsewhere, here = dest.send(
            [delivery("ra", [referral(system, "ra", "a")]), delivery("rb", [referral(system, "rb", "b")])]
        )
        assert not elsewhere.ok and "Patient/p-a, which is neither in this payload nor delivered" in elsewhere.error
        assert here.ok
    finally:
        store.close()
