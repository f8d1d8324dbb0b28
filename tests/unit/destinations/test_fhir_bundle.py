"""The FHIR destination's bundle and its reading of a transaction-response, without a server."""

import json

import requests

from cht_bridge.config.kinds.fhir import FhirSettings
from cht_bridge.destinations.base import Delivery
from cht_bridge.destinations.fhir import FhirDestination, _entry_answer, _type_id

SYSTEM = "https://cht.example.org/doc-id"


def destination(strategy: str) -> FhirDestination:
    return FhirDestination(
        requests.Session(), "https://emr.example.org/fhir", conn_id="emr", settings=FhirSettings(SYSTEM, strategy)
    )


def payload(doc_id: str) -> Delivery:
    patient = {"resourceType": "Patient", "id": "p-1", "identifier": [{"system": SYSTEM, "value": "pat 1"}]}
    request = {
        "resourceType": "ServiceRequest",
        "id": f"sr-{doc_id}",
        "identifier": [{"system": SYSTEM, "value": doc_id}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p-1"},
    }
    return Delivery(doc_id, json.dumps([patient, request]), f"key-{doc_id}")


def prepared(dest: FhirDestination, items: list[Delivery]) -> tuple[str, str, dict]:
    assert all(dest._accept(item) is None for item in items)
    method, url, body, headers = dest._prepare(items, True)
    assert "Idempotency-Keys" not in headers and headers["Idempotency-Key"]
    return method, url, json.loads(body)


def test_a_conditional_bundle_enters_a_shared_patient_once_and_refers_by_urn_uuid():
    method, url, bundle = prepared(destination("conditional"), [payload("r1"), payload("r2")])
    assert (method, url, bundle["type"]) == ("POST", "https://emr.example.org/fhir", "transaction")
    patient, first, second = bundle["entry"]
    assert patient["request"] == {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|pat%201"}
    assert patient["fullUrl"].startswith("urn:uuid:") and "id" not in patient["resource"]
    assert first["resource"]["subject"] == second["resource"]["subject"] == {"reference": patient["fullUrl"]}


def test_a_put_bundle_keeps_the_ids_and_references():
    _, _, bundle = prepared(destination("put"), [payload("r1")])
    patient, request = bundle["entry"]
    assert patient["request"] == {"method": "PUT", "url": "Patient/p-1"}
    assert patient["fullUrl"] == "https://emr.example.org/fhir/Patient/p-1" and patient["resource"]["id"] == "p-1"
    assert request["resource"]["subject"] == {"reference": "Patient/p-1"}


def test_entry_answers_are_read_whatever_the_status_and_location_shapes():
    assert _type_id("https://emr.example.org/fhir/Patient/abc/_history/2") == "Patient/abc"
    assert _type_id("Patient/abc") == "Patient/abc" and _type_id("Patient/abc/_history/1?token=x") == "Patient/abc"
    assert _type_id(None) is None and _type_id("abc") is None
    assert _entry_answer({"response": {"status": "201"}}).status == 201  # one server's bare status
    assert _entry_answer({"response": {"status": "200 OK", "location": "Patient/a/_history/1"}}).location == "Patient/a"
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "conflict", "diagnostics": "x"}],
    }
    refused = _entry_answer({"response": {"status": "409 Conflict", "outcome": outcome}})
    assert (refused.status, refused.reason) == (409, "error conflict: x")
    assert _entry_answer("garbage").status is None
