"""How the ``openmrs`` kind prepares a payload before any request: order, places, identifiers, refusals.

Only payloads that refer to nothing outside themselves, so no request is made (the base URL is
never reached); what OpenMRS answers is tested against the stand-in in tests/integration.
"""

import json

import pytest
import requests

from cht_bridge.destinations.openmrs import OpenMrsDestination, Refusal
from cht_bridge.fhir.ids import resource_id

SYSTEM = "https://cht.example.org/id"


@pytest.fixture
def destination():
    d = OpenMrsDestination(
        requests.Session(),
        "http://127.0.0.1:9",
        conn_id="openmrs",
        identifier_system=SYSTEM,
        identifier_types={SYSTEM: "CHT Document ID"},
        locations="include/places/emr_locations.csv",
    )
    yield d
    d.close()


def patient(cht_id="p1", place=None, **extra):
    out = {
        "resourceType": "Patient",
        "id": resource_id("Patient", cht_id),
        "identifier": [{"system": SYSTEM, "value": cht_id}],
        "name": [{"given": ["Jane"], "family": "Doe"}],
        **extra,
    }
    if place:
        out["managingOrganization"] = {"type": "Organization", "identifier": {"system": SYSTEM, "value": place}}
    return out


def observation(cht_id="r1", patient_id="p1"):
    return {
        "resourceType": "Observation",
        "id": resource_id("Observation", cht_id),
        "status": "final",
        "code": {"coding": [{"code": "5088AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]},
        "subject": {"reference": f"Patient/{resource_id('Patient', patient_id)}"},
        "valueQuantity": {"value": 38.5},
    }


def task(cht_id="r1", patient_id="p1"):
    return {
        "resourceType": "Task",
        "id": resource_id("Task", cht_id),
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{resource_id('Patient', patient_id)}"},
    }


def test_what_a_resource_refers_to_goes_first_and_identifiers_get_openmrs_types(destination):
    typed = [{"system": SYSTEM, "value": "p1"}, {"type": {"text": "National ID"}, "value": "123"}]
    resources, last = destination._prepared(json.dumps([observation(), patient(identifier=typed)]))
    assert [r["resourceType"] for r in resources] == ["Patient", "Observation"]
    assert last == f"Patient/{resource_id('Patient', 'p1')}"  # the payload's last resource, as given
    assert resources[0]["identifier"] == [
        {"value": "p1", "type": {"text": "CHT Document ID"}},
        {"value": "123", "type": {"text": "National ID"}},
    ]
    assert destination.requests == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([patient(place="nowhere")], "CHT place 'nowhere' has no OpenMRS location"),
        (
            [patient(identifier=[{"system": SYSTEM, "value": "p1"}, {"system": "https://other", "value": "1"}])],
            "identifier system 'https://other' has no OpenMRS identifier type",
        ),
        ([patient(identifier=[{"system": "https://other", "value": "1"}])], "none in the system"),
        ([{"resourceType": "ServiceRequest", "id": "x"}], "does not create ServiceRequest"),
        ([{"resourceType": "Patient"}], "no id"),
        ([patient(), patient()], "appears twice"),
        ([observation(), {**patient(), "gender": "M"}], "gender 'M'"),
        ([task(), patient()], "Task/.*: no CHT place names its OpenMRS location"),
        (
            [
                {**task(), "location": None},
                {
                    **patient(),
                    "link": [{"other": {"reference": task()["resourceType"] + "/" + task()["id"]}, "type": "seealso"}],
                },
            ],
            "circle",
        ),
        ([observation()], None),
    ],
)
def test_a_payload_that_cannot_go_is_refused_before_any_request(destination, payload, reason):
    if reason is None:  # a patient neither in the payload nor reachable at OpenMRS: retried later, not refused
        from cht_bridge.destinations.openmrs import _Unreachable

        with pytest.raises(_Unreachable):
            destination._prepared(json.dumps(payload))
        return
    with pytest.raises(Refusal, match=reason):
        destination._prepared(json.dumps(payload))
    assert destination.requests == 0


def test_an_unreachable_openmrs_opens_the_breaker_and_leaves_the_rest_pending():
    from cht_bridge.destinations.base import Delivery
    from cht_bridge.errors import CircuitOpenError
    from cht_bridge.http.retry import RetryPolicy

    d = OpenMrsDestination(
        requests.Session(),
        "http://127.0.0.1:9",  # nothing listens: every request is refused at once
        conn_id="openmrs",
        identifier_system=SYSTEM,
        retry=RetryPolicy(retries=0, breaker_after=3),
        concurrency=1,
    )
    try:
        payloads = [Delivery(f"r{i}", json.dumps([observation(f"r{i}")]), f"k{i}") for i in range(10)]
        with pytest.raises(CircuitOpenError) as raised:
            d.send(payloads)
        assert len(raised.value.results) < 10 and all(r.retryable for r in raised.value.results)
        assert d.requests == 3
    finally:
        d.close()


PLACE = "96da1dac-72ff-4d2a-b86e-cbe06b65a6a4"  # in include/places/emr_locations.csv


def test_odd_shapes_refuse_their_document_and_never_raise_out_of_send(destination):
    """The reviewer's shapes (identifier: 5, identifier: ["abc"] with a place, a reference that is a
    number): each a dead letter with a reason, and send answers for every delivery."""
    from cht_bridge.destinations.base import Delivery

    odd = {
        "number": [patient(identifier=5)],
        "strings": [patient(place=PLACE, identifier=["abc"])],
        "type_text": [patient(identifier=[{"system": SYSTEM, "value": "p1", "type": "x"}])],
        "extensions": [patient(place=PLACE, identifier=[{"system": SYSTEM, "value": "p1", "extension": 3}])],
        "reference": [{**observation(), "subject": {"reference": 7}}],
        "system": [patient(identifier=[{"system": {"a": 1}, "value": "p1"}])],
    }
    results = destination.send([Delivery(name, json.dumps(body), name) for name, body in odd.items()])
    assert [r.doc_id for r in results] == list(odd)
    for result in results:
        assert not result.ok and not result.retryable and result.error, result
    assert destination.requests == 0  # refused before any request
