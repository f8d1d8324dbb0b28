"""The OpenMRS FHIR2 stand-in answers as ``destinations.md`` §2 says OpenMRS answers."""

from __future__ import annotations

import uuid

import pytest
import requests

from standins.openmrs import FHIR_BASE, SESSION_PATH, OpenMrs

NATIONAL_ID = "49af6cdc-7968-4abb-bf46-de10d7f4859f"


@pytest.fixture
def openmrs():
    with OpenMrs(credentials=("admin", "Admin123")) as server:
        yield server


@pytest.fixture
def basic(openmrs) -> requests.Session:
    session = requests.Session()
    session.auth = openmrs.credentials
    return session


def patient(patient_id: str | None = None, **changes) -> dict:
    body = {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "type": {"text": "National ID"}, "value": "12345678"}],
        "name": [{"given": ["Jane"], "family": "Doe"}],
        "gender": "female",
        "birthDate": "1990-04-01",
    }
    if patient_id:
        body["id"] = patient_id
    return {**body, **changes}


def diagnostics(answer: requests.Response) -> str:
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def test_the_session_endpoint_sets_jsessionid_and_the_cookie_alone_authenticates(openmrs):
    login = requests.get(openmrs.url + SESSION_PATH, auth=openmrs.credentials, timeout=10)
    assert login.status_code == 200
    assert login.json()["authenticated"] is True
    cookie = login.cookies["JSESSIONID"]
    assert login.json()["sessionId"] == cookie
    read = requests.get(f"{openmrs.fhir_url}/Location", cookies={"JSESSIONID": cookie}, timeout=10)
    assert read.status_code == 200, read.text
    assert openmrs.logins == 1


def test_a_wrong_login_is_not_authenticated_and_fhir_answers_401_without_credentials(openmrs):
    wrong = requests.get(openmrs.url + SESSION_PATH, auth=("admin", "wrong"), timeout=10)
    assert wrong.status_code == 200 and wrong.json()["authenticated"] is False
    for auth in (None, ("admin", "wrong")):
        answer = requests.get(f"{openmrs.fhir_url}/Patient", auth=auth, timeout=10)
        assert answer.status_code == 401
        assert "Not authenticated" in answer.text
    assert requests.get(f"{openmrs.fhir_url}/metadata", timeout=10).json()["resourceType"] == "CapabilityStatement"


def test_an_expired_session_is_refused_and_a_new_login_works(openmrs):
    cookie = requests.get(openmrs.url + SESSION_PATH, auth=openmrs.credentials, timeout=10).cookies["JSESSIONID"]
    openmrs.expire_sessions()
    assert requests.get(f"{openmrs.fhir_url}/Location", cookies={"JSESSIONID": cookie}, timeout=10).status_code == 401
    again = requests.get(openmrs.url + SESSION_PATH, auth=openmrs.credentials, timeout=10).cookies["JSESSIONID"]
    assert requests.get(f"{openmrs.fhir_url}/Location", cookies={"JSESSIONID": again}, timeout=10).status_code == 200


def test_a_session_ends_after_its_configured_number_of_requests():
    with OpenMrs(credentials=("admin", "pw"), session_requests=2) as server:
        cookie = requests.get(server.url + SESSION_PATH, auth=("admin", "pw"), timeout=10).cookies["JSESSIONID"]
        statuses = [
            requests.get(f"{server.fhir_url}/Location", cookies={"JSESSIONID": cookie}, timeout=10).status_code
            for _ in range(3)
        ]
    assert statuses == [200, 200, 401]


def test_a_posted_id_is_kept_and_its_identifier_type_text_comes_back_as_the_type_name(openmrs, basic):
    patient_id = str(uuid.uuid4())
    body = patient(patient_id, identifier=[{"type": {"text": NATIONAL_ID}, "value": "99"}])
    created = basic.post(f"{openmrs.fhir_url}/Patient", json=body, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == patient_id
    assert created.headers["Location"].endswith(f"{FHIR_BASE}/Patient/{patient_id}")
    read = basic.get(f"{openmrs.fhir_url}/Patient/{patient_id}", timeout=10).json()
    assert read["identifier"][0]["type"] == {"text": "National ID"}
    assert read["identifier"][0]["value"] == "99"


def test_put_of_an_unknown_id_is_404_and_of_a_known_one_updates(openmrs, basic):
    patient_id = str(uuid.uuid4())
    missing = basic.put(f"{openmrs.fhir_url}/Patient/{patient_id}", json=patient(patient_id), timeout=10)
    assert missing.status_code == 404
    assert diagnostics(missing) == f"Resource of type Patient with ID {patient_id} is not known"
    basic.post(f"{openmrs.fhir_url}/Patient", json=patient(patient_id), timeout=10).raise_for_status()
    updated = basic.put(f"{openmrs.fhir_url}/Patient/{patient_id}", json=patient(patient_id, gender="male"), timeout=10)
    assert updated.status_code == 200
    assert basic.get(f"{openmrs.fhir_url}/Patient/{patient_id}", timeout=10).json()["gender"] == "male"
    mismatch = basic.put(f"{openmrs.fhir_url}/Patient/{patient_id}", json=patient(str(uuid.uuid4())), timeout=10)
    assert mismatch.status_code == 400 and diagnostics(mismatch) == "Patient id does not match resource id."


def test_no_bundles_and_no_conditional_create(openmrs, basic):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    refused = basic.post(openmrs.fhir_url, json=bundle, timeout=10)
    assert refused.status_code == 400
    assert "does not contain a resource type" in diagnostics(refused)
    headers = {"If-None-Exist": "identifier=12345678"}
    first = basic.post(f"{openmrs.fhir_url}/Patient", json=patient(), headers=headers, timeout=10)
    second = basic.post(f"{openmrs.fhir_url}/Patient", json=patient(), headers=headers, timeout=10)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]  # If-None-Exist is not honoured
    search = basic.get(f"{openmrs.fhir_url}/Patient", params={"identifier": "12345678"}, timeout=10).json()
    assert search["total"] == 2


def test_a_second_post_of_the_same_id_is_a_database_error_not_an_upsert(openmrs, basic):
    patient_id = str(uuid.uuid4())
    assert basic.post(f"{openmrs.fhir_url}/Patient", json=patient(patient_id), timeout=10).status_code == 201
    again = basic.post(f"{openmrs.fhir_url}/Patient", json=patient(patient_id), timeout=10)
    assert again.status_code == 500
    assert "Duplicate entry" in diagnostics(again)
    assert len(openmrs.resources("Patient")) == 1


def test_an_unknown_identifier_type_is_dropped_and_a_patient_left_without_one_is_422(openmrs, basic):
    two = patient(
        identifier=[{"type": {"text": "No Such Type"}, "value": "1"}, {"type": {"text": "National ID"}, "value": "2"}]
    )
    kept = basic.post(f"{openmrs.fhir_url}/Patient", json=two, timeout=10)
    assert kept.status_code == 201
    assert [i["value"] for i in kept.json()["identifier"]] == ["2"]
    unmapped_system = patient(identifier=[{"system": "https://cht.example.org/uuid", "value": "3"}])
    for body in (patient(identifier=[{"type": {"text": "No Such Type"}, "value": "1"}]), unmapped_system):
        refused = basic.post(f"{openmrs.fhir_url}/Patient", json=body, timeout=10)
        assert refused.status_code == 422
        assert "failed to validate" in diagnostics(refused) and "identifier" in diagnostics(refused)


def test_a_bad_gender_code_is_a_parse_error(openmrs, basic):
    refused = basic.post(f"{openmrs.fhir_url}/Patient", json=patient(gender="M"), timeout=10)
    assert refused.status_code == 400
    assert "Unknown AdministrativeGender code 'M'" in diagnostics(refused)


def test_service_request_is_read_only_and_encounters_need_their_patient_and_location(openmrs, basic):
    write = basic.post(f"{openmrs.fhir_url}/ServiceRequest", json={"resourceType": "ServiceRequest"}, timeout=10)
    assert write.status_code == 400 and "does not know how to handle POST" in diagnostics(write)
    assert basic.get(f"{openmrs.fhir_url}/ServiceRequest", timeout=10).status_code == 200
    location = next(r["id"] for r in openmrs.resources("Location"))
    patient_id = str(uuid.uuid4())
    encounter = {
        "resourceType": "Encounter",
        "id": str(uuid.uuid4()),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "location": [{"location": {"reference": f"Location/{location}"}}],
    }
    dangling = basic.post(f"{openmrs.fhir_url}/Encounter", json=encounter, timeout=10)
    assert dangling.status_code == 422 and f"Patient/{patient_id} does not exist" in diagnostics(dangling)
    basic.post(f"{openmrs.fhir_url}/Patient", json=patient(patient_id), timeout=10).raise_for_status()
    assert basic.post(f"{openmrs.fhir_url}/Encounter", json=encounter, timeout=10).status_code == 201
    found = basic.get(f"{openmrs.fhir_url}/Encounter", params={"subject": f"Patient/{patient_id}"}, timeout=10)
    assert found.json()["total"] == 1


def test_a_deleted_patient_reads_410_and_search_pages_through_getpages_links(openmrs, basic):
    ids = [str(uuid.uuid4()) for _ in range(12)]
    for patient_id in ids:
        basic.post(f"{openmrs.fhir_url}/Patient", json=patient(patient_id), timeout=10).raise_for_status()
    assert basic.delete(f"{openmrs.fhir_url}/Patient/{ids[0]}", timeout=10).status_code == 200
    assert basic.get(f"{openmrs.fhir_url}/Patient/{ids[0]}", timeout=10).status_code == 410
    page = basic.get(f"{openmrs.fhir_url}/Patient", params={"identifier": "12345678"}, timeout=10).json()
    assert page["total"] == 11 and len(page["entry"]) == 10
    following = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert "_getpages=" in following and following.startswith(openmrs.fhir_url + "?")
    rest = basic.get(following, timeout=10).json()
    seen = {e["resource"]["id"] for e in page["entry"] + rest["entry"]}
    assert seen == set(ids[1:])
    assert not [link for link in rest["link"] if link["relation"] == "next"]


def test_the_log_names_each_fhir_request_without_its_query(openmrs, basic):
    basic.get(f"{openmrs.fhir_url}/Patient", params={"identifier": "secret-id"}, timeout=10)
    assert openmrs.requests_made("GET", "Patient") == [("GET", f"{FHIR_BASE}/Patient", 200)]


def test_resources_survive_a_restart_in_their_directory(tmp_path):
    kept, voided, purged = (str(uuid.uuid4()) for _ in range(3))
    with OpenMrs(credentials=("admin", "pw"), directory=tmp_path) as server:
        for patient_id in (kept, voided, purged):
            requests.post(
                f"{server.fhir_url}/Patient", json=patient(patient_id), auth=("admin", "pw"), timeout=10
            ).raise_for_status()
        requests.delete(f"{server.fhir_url}/Patient/{voided}", auth=("admin", "pw"), timeout=10).raise_for_status()
        server.purge("Patient", purged)
    with OpenMrs(credentials=("admin", "pw"), directory=tmp_path) as server:
        assert [p["id"] for p in server.resources("Patient")] == [kept]
        gone = requests.get(f"{server.fhir_url}/Patient/{voided}", auth=("admin", "pw"), timeout=10)
        never = requests.get(f"{server.fhir_url}/Patient/{purged}", auth=("admin", "pw"), timeout=10)
        assert (gone.status_code, never.status_code) == (410, 404)
