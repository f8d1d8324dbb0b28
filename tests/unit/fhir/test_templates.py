"""FHIR templates: a pipeline's ``fhir:`` block, through the real mapping engine, makes R4 resources.

Each template's output is validated with the R4 models (``fhir.validate.problems``) and its
fields are asserted one by one: gender, E.164 phones, identifiers, birth dates, references.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cht_bridge.config.loader import load_pipeline, parse_pipeline, read_yaml
from cht_bridge.destinations.registry import kinds
from cht_bridge.fhir.ids import reference, resource_id
from cht_bridge.fhir.validate import problems
from cht_bridge.mapping import Mapper
from cht_bridge.v8 import Sandbox
from tests.unit.fhir.hydrated import hydrated_reports

EXAMPLES = Path(__file__).resolve().parents[3] / "include" / "examples" / "fhir"
SYSTEM = "https://cht.example.org/id"

LINEAGE = {
    "_id": "hh-1",
    "type": "clinic",
    "name": "Household 1",
    "parent": {
        "_id": "hc-1",
        "type": "health_center",
        "name": "Kisumu HC",
        "parent": {"_id": "dh-1", "name": "Kisumu"},
    },
}
PATIENT = {
    "_id": "p-1",
    "type": "person",
    "name": "Wanjiru  Achieng Kamau",
    "sex": "female",
    "date_of_birth": "1990-04-17",
    "date_of_birth_method": "",
    "phone": "0712 345 678",
    "phone_alternate": "+254 712 345678",
    "patient_id": "40213",
    "parent": LINEAGE,
}
CHW = {
    "_id": "chw-1",
    "type": "person",
    "name": "Otieno",
    "sex": "Male",
    "phone": "+254700123456",
    "parent": LINEAGE["parent"],
}
REFERRAL = {
    "_id": "r-1",
    "type": "data_record",
    "form": "assessment",
    "reported_date": 1767225600000,
    "fields": {"referral": "yes", "symptoms": "fever cough", "temperature": "39.2", "danger": "yes"},
    "patient": PATIENT,
    "contact": CHW,
}


def pipeline(resources, **fhir):
    raw = {
        "name": "fhirp",
        "start_date": "2026-01-01",
        "cht": {"conn_id": "c"},
        "destination": {"conn_id": "d", "path": "/fhir"},
        "relevant_to": "doc.type === 'data_record' || doc.type === 'person'",
        "fhir": {"identifier_system": SYSTEM, "resources": resources, **fhir},
    }
    return parse_pipeline(raw, file="test.yaml")


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def run(p, docs, sandbox):
    return Mapper.for_pipeline(p, sandbox=sandbox).map(docs)


def resources_of(p, doc, sandbox):
    (mapped,) = run(p, [doc], sandbox)
    assert mapped.error is None, mapped.error
    assert isinstance(mapped.payload, list)
    return mapped.payload


def by_type(resources):
    return {r["resourceType"]: r for r in resources}


def test_patient_from_a_cht_person(sandbox):
    p = pipeline(
        [
            {
                "template": "patient",
                "from": "doc.patient",
                "fields": {"organization": {"path": "doc.patient.parent.parent", "optional": True}},
                "identifiers": [{"system": "https://cht.example.org/pid", "value": "doc.patient.patient_id"}],
            }
        ]
    )
    (patient,) = resources_of(p, REFERRAL, sandbox)
    assert problems([patient], identifier_system=SYSTEM) == []
    assert patient["id"] == resource_id("Patient", "p-1")
    assert patient["identifier"] == [
        {"system": SYSTEM, "value": "p-1"},
        {"system": "https://cht.example.org/pid", "value": "40213"},
    ]
    assert patient["name"] == [
        {"use": "official", "text": "Wanjiru Achieng Kamau", "given": ["Wanjiru", "Achieng"], "family": "Kamau"}
    ]
    assert patient["gender"] == "female"
    assert patient["birthDate"] == "1990-04-17" and "_birthDate" not in patient
    # both numbers are the same one in E.164: written once
    assert patient["telecom"] == [{"system": "phone", "value": "+254712345678", "use": "mobile", "rank": 1}]
    assert patient["address"] == [{"use": "home", "text": "Household 1, Kisumu HC, Kisumu"}]
    # the health centre's Organization is not in the payload: a logical reference, by its CHT id
    assert patient["managingOrganization"] == {
        "type": "Organization",
        "identifier": {"system": SYSTEM, "value": "hc-1"},
        "display": "Kisumu HC",
    }


def test_an_organization_in_the_payload_is_referred_to_literally(sandbox):
    p = pipeline(
        [
            {"template": "organization", "from": "doc.patient.parent.parent"},
            {"template": "patient", "from": "doc.patient", "fields": {"organization": "doc.patient.parent.parent"}},
        ]
    )
    resources = resources_of(p, REFERRAL, sandbox)
    assert problems(resources, identifier_system=SYSTEM) == []
    organization, patient = resources  # dependencies first
    assert organization["name"] == "Kisumu HC" and organization["identifier"] == [{"system": SYSTEM, "value": "hc-1"}]
    assert organization["partOf"]["identifier"]["value"] == "dh-1"
    assert patient["managingOrganization"] == {"reference": reference("Organization", "hc-1"), "display": "Kisumu HC"}


@pytest.mark.parametrize(
    ("sex", "gender"),
    [("male", "male"), ("Female", "female"), ("F", "unknown"), ("intersex", "unknown"), ("", None), (None, None)],
)
def test_gender_from_cht_sex(sandbox, sex, gender):
    person = {**PATIENT, "sex": sex} if sex is not None else {k: v for k, v in PATIENT.items() if k != "sex"}
    (patient,) = resources_of(pipeline([{"template": "patient"}]), person, sandbox)
    assert patient.get("gender") == gender
    assert problems([patient]) == []


def test_an_estimated_birth_date_is_sent_to_the_month_with_the_configured_extension(sandbox):
    person = {**PATIENT, "date_of_birth": "1990-04-17", "date_of_birth_method": "approx"}
    (plain,) = resources_of(pipeline([{"template": "patient"}]), person, sandbox)
    assert plain["birthDate"] == "1990-04" and "_birthDate" not in plain  # OpenMRS: month precision = estimated
    url = "https://cht.example.org/fhir/StructureDefinition/birth-date-estimated"
    (flagged,) = resources_of(pipeline([{"template": "patient"}], birth_date_extension=url), person, sandbox)
    assert flagged["birthDate"] == "1990-04"
    assert flagged["_birthDate"] == {"extension": [{"url": url, "valueBoolean": True}]}
    assert problems([plain]) == problems([flagged]) == []


def test_a_single_name_and_separate_name_fields(sandbox):
    (one,) = resources_of(pipeline([{"template": "patient"}]), {**PATIENT, "name": "Achieng"}, sandbox)
    assert one["name"] == [{"use": "official", "text": "Achieng", "given": ["Achieng"]}]
    assert "managingOrganization" not in one  # only when the pipeline names the place (fields.organization)
    assert one["address"] == [{"use": "home", "text": "Household 1, Kisumu HC, Kisumu"}]  # by default
    fields = {"given_name": "doc.short_name", "family_name": "doc.surname"}
    p = pipeline([{"template": "patient", "fields": fields}])
    (split,) = resources_of(p, {**PATIENT, "short_name": "Wanjiru", "surname": "Kamau"}, sandbox)
    assert split["name"][0]["given"] == ["Wanjiru"] and split["name"][0]["family"] == "Kamau"


def test_referral_service_request_and_task(sandbox):
    p = pipeline(
        [
            {"template": "patient", "from": "doc.patient"},
            {"template": "practitioner", "from": "doc.contact"},
            {
                "template": "service_request",
                "fields": {
                    "reason": "doc.fields.symptoms",
                    "priority": {"expr": "doc.fields.danger === 'yes' ? 'urgent' : 'routine'"},
                },
                "codes": {
                    "code": {"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}
                },
            },
            {"template": "task", "options": {"focus": "service_request"}, "fields": {"priority": {"expr": "'asap'"}}},
        ]
    )
    resources = resources_of(p, REFERRAL, sandbox)
    assert problems(resources, identifier_system=SYSTEM) == []
    assert [r["resourceType"] for r in resources] == ["Patient", "Practitioner", "ServiceRequest", "Task"]
    found = by_type(resources)
    practitioner, request, task = found["Practitioner"], found["ServiceRequest"], found["Task"]
    assert practitioner["gender"] == "male" and practitioner["telecom"][0]["value"] == "+254700123456"
    assert request["id"] == resource_id("ServiceRequest", "r-1")
    assert (
        request["subject"]
        == {"reference": reference("Patient", "p-1")}
        == {"reference": f"Patient/{found['Patient']['id']}"}
    )
    assert request["requester"] == {"reference": reference("Practitioner", "chw-1")}
    assert (request["status"], request["intent"], request["priority"]) == ("active", "order", "urgent")
    assert request["authoredOn"] == request["occurrenceDateTime"] == "2026-01-01T00:00:00.000Z"
    assert request["reasonCode"] == [{"text": "fever cough"}]
    assert request["code"]["coding"][0]["code"] == "3457005"
    assert request["identifier"] == [{"system": SYSTEM, "value": "r-1"}]
    assert task["for"] == request["subject"] and task["focus"] == {"reference": f"ServiceRequest/{request['id']}"}
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "asap")
    assert task["authoredOn"] == "2026-01-01T00:00:00.000Z"


def test_a_practitioner_role_as_requester(sandbox):
    p = pipeline(
        [
            {"template": "patient", "from": "doc.patient"},
            {"template": "practitioner", "from": "doc.contact"},
            {
                "template": "practitioner_role",
                "from": "doc.contact",
                "codes": {"role": {"system": "http://snomed.info/sct", "code": "158965000"}},
            },
            {"template": "service_request", "options": {"requester_type": "PractitionerRole"}},
        ]
    )
    resources = resources_of(p, REFERRAL, sandbox)
    assert problems(resources) == []
    found = by_type(resources)
    role = found["PractitionerRole"]
    assert role["practitioner"] == {"reference": reference("Practitioner", "chw-1")}
    assert role["organization"]["identifier"]["value"] == "hc-1"
    assert found["ServiceRequest"]["requester"] == {"reference": reference("PractitionerRole", "chw-1")}


def test_encounter_and_observations(sandbox):
    loinc = "http://loinc.org"
    p = pipeline(
        [
            {"template": "patient", "from": "doc.patient"},
            {"template": "practitioner", "from": "doc.contact"},
            {"template": "encounter"},
            {
                "template": "observation",
                "key": "temp",
                "fields": {"value": "doc.fields.temperature"},
                "codes": {"code": {"system": loinc, "code": "8310-5", "display": "Body temperature"}},
                "options": {"unit": {"unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}},
            },
            {
                "template": "observation",
                "key": "referred",
                "fields": {"value": "doc.fields.referral"},
                "codes": {"code": {"code": "referred"}},
                "options": {"value_codes": {"yes": {"system": "http://snomed.info/sct", "code": "373066001"}}},
            },
            {
                "template": "observation",
                "key": "muac",
                "fields": {"value": {"path": "doc.fields.muac", "optional": True}},
                "codes": {"code": {"system": loinc, "code": "56072-2"}},
            },
        ]
    )
    resources = resources_of(p, REFERRAL, sandbox)
    assert problems(resources, identifier_system=SYSTEM) == []
    encounter = by_type(resources)["Encounter"]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert len(observations) == 2  # muac was not answered: no Observation
    temp, referred = observations
    assert encounter["class"]["code"] == "HH" and encounter["status"] == "finished"
    assert encounter["subject"] == {"reference": reference("Patient", "p-1")}
    assert encounter["participant"] == [{"individual": {"reference": reference("Practitioner", "chw-1")}}]
    assert encounter["period"] == {"start": "2026-01-01T00:00:00.000Z"}
    assert temp["id"] == resource_id("Observation", "r-1/temp") != referred["id"]
    assert temp["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    assert temp["subject"] == {"reference": reference("Patient", "p-1")}
    assert temp["code"] == {"coding": [{"system": loinc, "code": "8310-5", "display": "Body temperature"}]}
    assert temp["valueQuantity"] == {"value": 39.2, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
    assert temp["status"] == "final" and temp["effectiveDateTime"] == "2026-01-01T00:00:00.000Z"
    assert referred["valueCodeableConcept"] == {"coding": [{"system": "http://snomed.info/sct", "code": "373066001"}]}


def test_a_value_no_resource_can_be_made_from_fails_that_document_only(sandbox):
    p = pipeline(
        [
            {"template": "patient", "from": "doc.patient"},
            {"template": "service_request", "fields": {"priority": "doc.fields.priority"}},
        ]
    )
    bad_date = copy.deepcopy(REFERRAL) | {"_id": "r-date"}
    bad_date["patient"]["date_of_birth"] = "17/04/1990"
    bad_date["fields"]["priority"] = "routine"
    bad_priority = copy.deepcopy(REFERRAL) | {"_id": "r-prio"}
    bad_priority["fields"]["priority"] = "high"
    no_patient = {k: v for k, v in REFERRAL.items() if k != "patient"} | {"_id": "r-nopat"}
    no_patient["fields"] = {**REFERRAL["fields"], "priority": "stat"}
    good = copy.deepcopy(REFERRAL) | {"_id": "r-good"}
    good["fields"]["priority"] = "stat"
    results = {m.doc_id: m for m in run(p, [bad_date, bad_priority, no_patient, good], sandbox)}
    assert results["r-date"].error == (
        "FHIR template error for 'fhirp/resources.0.date_of_birth' on source document 'r-date': "
        "is not a date (YYYY-MM-DD)"
    )
    assert "1990" not in results["r-date"].error  # the value itself is not quoted
    assert results["r-prio"].error == (
        "FHIR template error for 'fhirp/resources.1.priority' on source document 'r-prio': "
        "'high' is not a FHIR priority (routine, urgent, asap, stat)"
    )
    assert results["r-nopat"].error == (
        "Mapping error for 'fhirp/resources.0.cht_id' on source document 'r-nopat': "
        "cannot find 'doc.patient._id' on source document"
    )
    assert all(not m.retryable for m in results.values())
    assert (
        results["r-good"].error is None and by_type(results["r-good"].payload)["ServiceRequest"]["priority"] == "stat"
    )


def test_an_optional_resource_is_left_out_when_its_document_is_absent(sandbox):
    p = pipeline(
        [
            {"template": "practitioner", "from": "doc.contact", "optional": True},
            {"template": "patient", "from": "doc.patient"},
        ]
    )
    without = {k: v for k, v in REFERRAL.items() if k != "contact"}
    assert [r["resourceType"] for r in resources_of(p, without, sandbox)] == ["Patient"]
    assert [r["resourceType"] for r in resources_of(p, REFERRAL, sandbox)] == ["Practitioner", "Patient"]


def test_the_payload_hash_follows_the_resources(sandbox):
    p = pipeline([{"template": "patient"}])
    first, same, changed = run(p, [PATIENT, dict(PATIENT), {**PATIENT, "sex": "male"}], sandbox)
    assert first.payload_hash == same.payload_hash != changed.payload_hash


def test_templates_on_hydrated_synthetic_reports(sandbox):
    """The example pipelines over the generator's reports, hydrated as a run hydrates them."""
    docs = hydrated_reports(form="assessment")
    for name in ("referral_templates.yaml", "assessment_templates.yaml"):
        p = example(name)
        results = [m for m in run(p, docs, sandbox) if m.relevant]
        assert results and all(m.error is None for m in results), [m.error for m in results if m.error][:3]
        for m in results:
            assert problems(m.payload, identifier_system=SYSTEM_OF_EXAMPLES) == []
            found = by_type(m.payload)
            doc = next(d for d in docs if d["_id"] == m.doc_id)
            assert found["Patient"]["id"] == resource_id("Patient", doc["patient"]["_id"])
            assert found["Patient"]["gender"] == doc["patient"]["sex"]
            assert found["Practitioner"]["id"] == resource_id("Practitioner", doc["contact"]["_id"])
    referrals = [m for m in run(example("referral_templates.yaml"), docs, sandbox) if m.relevant]
    assert len(referrals) == sum(1 for d in docs if d["fields"].get("referral") == "yes")


SYSTEM_OF_EXAMPLES = "https://cht.example.org/fhir/cht-id"


def example(name: str):
    """An example pipeline; on a checkout without its destination kind, its fhir: block with a rest destination."""
    raw = read_yaml(EXAMPLES / name)
    if raw["destination"]["type"] not in kinds():
        raw["destination"] = {"conn_id": "d", "path": "/fhir"}
    return parse_pipeline(raw, file=str(EXAMPLES / name))


def test_every_example_file_loads():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        p = example(path.name)
        assert p.fhir is not None and p.fhir.identifier_system == SYSTEM_OF_EXAMPLES
        if read_yaml(path)["destination"]["type"] in kinds():
            assert load_pipeline(path).fhir == p.fhir


def test_a_blank_name_fails_its_document(sandbox):
    (mapped,) = run(pipeline([{"template": "patient"}]), [{**PATIENT, "name": "   "}], sandbox)
    assert mapped.error == (
        "FHIR template error for 'fhirp/resources.0.name' on source document 'p-1': has no value (only spaces)"
    )
