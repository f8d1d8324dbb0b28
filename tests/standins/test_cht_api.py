"""The local CHT API against a real local CouchDB server: each endpoint's status codes and bodies
as cht.md §2 says (auth, records, hydrate, contacts-by-phone, people/places, datasource, /medic)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests

from standins.cht_api import prefers_json
from standins.generate import lineage

JSON = {"Accept": "application/json"}
FIREWALL = {"code": 403, "error": "forbidden", "details": "Offline users are not allowed access to this endpoint"}
CHW_PHONE = "+254712345678"


DH = {"_id": "dh1", "type": "district_hospital", "name": "District One", "reported_date": 1}
HC = {
    "_id": "hc1",
    "type": "health_center",
    "name": "Health Center One",
    "parent": lineage("dh1"),
    "contact": lineage("chw1", "hc1", "dh1"),
    "reported_date": 1,
}
CHW = {
    "_id": "chw1",
    "type": "person",
    "name": "CHW Carol",
    "phone": CHW_PHONE,
    "parent": lineage("hc1", "dh1"),
    "reported_date": 1,
}
CLINIC = {
    "_id": "clinic1",
    "type": "clinic",
    "name": "Household One",
    "parent": lineage("hc1", "dh1"),
    "contact": lineage("pat1", "clinic1", "hc1", "dh1"),
    "place_id": "30303",
    "reported_date": 1,
}
PATIENT = {
    "_id": "pat1",
    "type": "person",
    "name": "Patient Pam",
    "parent": lineage("clinic1", "hc1", "dh1"),
    "patient_id": "50505",
    "reported_date": 1,
}
REPORT = {
    "_id": "rep1",
    "type": "data_record",
    "form": "LTFU_FOLLOWUP",
    "contact": lineage("chw1", "hc1", "dh1"),
    "fields": {"patient_id": "50505"},
    "reported_date": 2,
}


@pytest.fixture
def seeded(cht_api):
    cht_api.db.put(DH, HC, CHW, CLINIC, PATIENT, REPORT)
    return cht_api


def post_record(env, body: Any, auth=None, headers=None, version: str = "v2") -> requests.Response:
    return requests.post(
        f"{env.url}/api/{version}/records", json=body, auth=auth or env.online, headers=headers or JSON, timeout=30
    )


# -- auth ----------------------------------------------------------------------------------------
def test_no_credentials_json_client_gets_json_401(cht_api):
    r = requests.get(f"{cht_api.url}/api/v1/hydrate", params={"doc_ids": "[]"}, headers=JSON, timeout=30)
    assert r.status_code == 401
    assert r.json() == {"code": 401, "error": "unauthorized"}


def test_no_credentials_text_client_gets_basic_prompt(cht_api):
    r = requests.get(f"{cht_api.url}/api/v1/hydrate", params={"doc_ids": "[]"}, timeout=30)
    assert r.status_code == 401
    assert r.text == "not logged in"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Medic Web Services"'


def test_wrong_password_is_401(cht_api):
    name, _ = cht_api.online
    r = requests.post(f"{cht_api.url}/api/v2/records", json={}, auth=(name, "wrong"), headers=JSON, timeout=30)
    assert r.status_code == 401
    assert r.json() == {"code": 401, "error": "unauthorized"}


@pytest.mark.parametrize(
    "method,path,params",
    [
        ("GET", "/api/v1/hydrate", {"doc_ids": '["pat1"]'}),
        ("GET", "/api/v1/contacts-by-phone", {"phone": CHW_PHONE}),
        ("GET", "/api/v1/person/pat1", {}),
        ("GET", "/medic/_design/medic-client/_view/contacts_by_phone", {}),
    ],
)
def test_offline_user_gets_the_firewall_body(seeded, method, path, params):
    # The firewall answers JSON whatever the client accepts (cht-core uses res.json).
    r = requests.request(method, seeded.url + path, params=params, auth=seeded.offline, timeout=30)
    assert r.status_code == 403
    assert r.json() == FIREWALL


def test_offline_user_may_still_post_records(cht_api):
    """Records check can_create_records only, not online status (cht.md §2.2)."""
    r = post_record(cht_api, {"_meta": {"form": "LTFU_FOLLOWUP"}, "patient_uuid": "p"}, auth=cht_api.offline)
    assert r.status_code == 200


def test_missing_permission_is_insufficient_privileges(cht_api):
    # The cht fixture's own user has only mm-online: online, but no permissions.
    r = post_record(cht_api, {"_meta": {"form": "LTFU_FOLLOWUP"}}, auth=cht_api.db.user)
    assert r.status_code == 403
    assert r.json() == {"code": 403, "error": "Insufficient privileges"}
    r = requests.post(f"{cht_api.url}/api/v2/records", json={}, auth=cht_api.db.user, timeout=30)
    assert (r.status_code, r.text) == (403, "Insufficient privileges")


def test_undefined_role_is_offline_and_defined_online_role_is_online(cht_api):
    undefined = cht_api.add_user(["some_unknown_role"])
    r = requests.get(f"{cht_api.url}/api/v1/hydrate", params={"doc_ids": "[]"}, auth=undefined, timeout=30)
    assert (r.status_code, r.json()) == (403, FIREWALL)
    cht_api.update_settings(roles={**cht_api.settings()["roles"], "some_unknown_role": {"name": "x"}})
    r = requests.get(f"{cht_api.url}/api/v1/hydrate", params={"doc_ids": "[]"}, auth=undefined, timeout=30)
    assert (r.status_code, r.json()) == (200, [])


def test_unknown_path_is_404_per_accept(cht_api):
    r = requests.get(f"{cht_api.url}/api/v1/nothing", headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (404, {"code": 404, "error": "Not found"})
    r = requests.get(f"{cht_api.url}/nothing", timeout=30)
    assert (r.status_code, r.text) == (404, "Not found")


# -- records (§2.2) ------------------------------------------------------------------------------
def test_record_is_created_with_chts_doc_shape(seeded):
    body = {
        "_meta": {"form": "ltfu_followup", "from": "0712345678", "reported_date": 1700000000000, "locale": "en"},
        "patient_uuid": "pat1",
        "REASON": "missed visit",
        "last_visit_date": "2024-01-02",
        "source_ref": "emr:42",
        "not_declared": "dropped",
    }
    r = post_record(seeded, body)
    assert r.status_code == 200
    answer = r.json()
    assert set(answer) == {"success", "id"} and answer["success"] is True
    doc = seeded.db.get(answer["id"])
    assert doc["type"] == "data_record"
    assert doc["form"] == "LTFU_FOLLOWUP"
    assert doc["from"] == CHW_PHONE
    assert doc["reported_date"] == 1700000000000
    assert doc["fields"] == {
        "patient_uuid": "pat1",
        "reason": "missed visit",
        "last_visit_date": 1704153600000,
        "source_ref": "emr:42",
    }
    assert doc["errors"] == [] and doc["tasks"] == []
    assert doc["contact"] == lineage("chw1", "hc1", "dh1")
    assert doc["sms_message"]["form"] == "LTFU_FOLLOWUP" and doc["sms_message"]["from"] == "0712345678"


def test_each_post_is_a_new_doc_and_v1_works(cht_api):
    body = {"_meta": {"form": "CONTACT_TRACE"}, "patient_uuid": "p", "exposure_date": "2024-03-01"}
    first = post_record(cht_api, json.loads(json.dumps(body))).json()["id"]
    second = post_record(cht_api, body, version="v1").json()["id"]
    assert first != second
    doc = cht_api.db.get(second)
    assert doc["fields"] == {"patient_uuid": "p", "exposure_date": 1709251200000}
    assert "from" not in doc and "contact" not in doc  # public form: no sender is fine
    assert doc["errors"] == []


def test_missing_required_field_goes_into_doc_errors_with_200(cht_api):
    r = post_record(cht_api, {"_meta": {"form": "LTFU_FOLLOWUP"}, "reason": "x"})
    assert r.status_code == 200
    doc = cht_api.db.get(r.json()["id"])
    assert doc["errors"] == [{"code": "sys.missing_fields", "message": "Missing or invalid fields: patient_uuid."}]
    assert doc["fields"] == {"reason": "x"}


def test_unknown_form_is_500_form_not_found(cht_api):
    r = post_record(cht_api, {"_meta": {"form": "nope"}})
    assert r.status_code == 500
    assert r.json() == {"code": 500, "error": "Server error", "details": "Form not found: NOPE"}
    r = post_record(cht_api, {"_meta": {"form": "nope"}}, headers={"Accept": "text/plain"})
    assert (r.status_code, r.text) == (500, 'Server error: "Form not found: NOPE"')


@pytest.mark.parametrize(
    "body,details",
    [
        ({"patient_uuid": "x"}, "Missing _meta property."),
        ({}, "Missing _meta property."),
        ({"_meta": {"from": "+254712345678"}}, "Missing required field: form"),
    ],
)
def test_missing_meta_or_form_is_500(cht_api, body, details):
    r = post_record(cht_api, body)
    assert (r.status_code, r.json()) == (500, {"code": 500, "error": "Server error", "details": details})


@pytest.mark.parametrize(
    "accept,wants_json",
    [
        (None, False),
        ("*/*", False),
        ("application/json", True),
        ("application/json, text/plain, */*", True),
        ("text/plain, application/json", False),
        ("application/json;q=0.5, text/plain", False),
        ("text/html", False),
    ],
)
def test_prefers_json_follows_express_negotiation(accept, wants_json):
    assert prefers_json(accept) is wants_json


def test_unsupported_content_type_is_500(cht_api):
    r = requests.post(
        f"{cht_api.url}/api/v2/records",
        data=b"<xml/>",
        headers={**JSON, "Content-Type": "application/xml"},
        auth=cht_api.online,
        timeout=30,
    )
    assert (r.status_code, r.json()) == (500, {"code": 500, "error": "Server error"})
    r = requests.post(f"{cht_api.url}/api/v2/records", headers=JSON, auth=cht_api.online, timeout=30)
    assert (r.status_code, r.json()) == (500, {"code": 500, "error": "Server error"})


def test_settings_changes_apply_booleans_dotted_fields_and_facility_not_found(cht_api):
    forms = cht_api.settings()["forms"]
    forms["TEST"] = {
        "meta": {"code": "TEST"},
        "fields": {
            "flag": {"type": "boolean"},
            "count": {"type": "integer"},
            "when": {"type": "date", "required": True},
            "patient.name": {"type": "string"},
        },
        "public_form": False,
    }
    cht_api.update_settings(forms=forms)
    body = {
        "_meta": {"form": "test", "from": "+254799999999"},
        "flag": 0,
        "count": "3",
        "when": "not a date",
        "patient": {"name": "A"},
    }
    r = post_record(cht_api, body)
    assert r.status_code == 200
    doc = cht_api.db.get(r.json()["id"])
    # 0 -> false; an unparsable date is present (moment's NaN) and stored as null.
    assert doc["fields"] == {"flag": False, "count": "3", "when": None, "patient": {"name": "A"}}
    assert [e["code"] for e in doc["errors"]] == ["sys.incorrect_type", "sys.facility_not_found"]
    assert doc["errors"][1] == {"code": "sys.facility_not_found", "message": "Facility not found."}


def test_urlencoded_sms_is_stored_as_a_message(seeded):
    r = requests.post(
        f"{seeded.url}/api/v2/records",
        data={"message": "hello there", "from": "0712345678", "sent_timestamp": "1700000000000"},
        auth=seeded.online,
        headers=JSON,
        timeout=30,
    )
    assert r.status_code == 200
    doc = seeded.db.get(r.json()["id"])
    assert "form" not in doc
    assert doc["sms_message"]["message"] == "hello there"
    assert doc["from"] == CHW_PHONE and doc["reported_date"] == 1700000000000
    assert doc["contact"]["_id"] == "chw1"


# -- hydrate (§2.3) ------------------------------------------------------------------------------
def check_hydrated_report(entry: dict[str, Any]) -> None:
    doc = entry["doc"]
    assert doc["contact"]["name"] == "CHW Carol"
    assert doc["contact"]["parent"]["name"] == "Health Center One"
    assert doc["contact"]["parent"]["contact"]["name"] == "CHW Carol"  # primary contact filled
    assert doc["contact"]["parent"]["parent"]["name"] == "District One"
    assert doc["patient"]["_id"] == "pat1"  # subject by shortcode 50505
    assert doc["patient"]["parent"]["name"] == "Household One"


def test_hydrate_get_keeps_order_and_reports_missing(seeded):
    ids = ["rep1", "missing", "pat1"]
    r = requests.get(f"{seeded.url}/api/v1/hydrate", params={"doc_ids": json.dumps(ids)}, auth=seeded.online)
    assert r.status_code == 200
    body = r.json()
    assert [e["id"] for e in body] == ids
    assert body[1] == {"id": "missing", "error": "not_found"}
    check_hydrated_report(body[0])
    patient = body[2]["doc"]
    assert patient["parent"]["_id"] == "clinic1" and patient["parent"]["parent"]["parent"]["_id"] == "dh1"
    assert patient["parent"]["contact"]["name"] == "Patient Pam"


def test_hydrate_post_and_subject_by_uuid(seeded):
    seeded.db.put({**REPORT, "_id": "rep2", "fields": {"patient_uuid": "pat1", "place_id": "30303"}})
    r = requests.post(f"{seeded.url}/api/v1/hydrate", json={"doc_ids": ["rep2"]}, auth=seeded.online)
    assert r.status_code == 200
    (entry,) = r.json()
    assert entry["doc"]["patient"]["name"] == "Patient Pam"
    assert entry["doc"]["place"]["_id"] == "clinic1"


@pytest.mark.parametrize("params", [{"doc_ids": "nope"}, {"doc_ids": '{"a": 1}'}, {}])
def test_hydrate_bad_param_is_400(cht_api, params):
    r = requests.get(f"{cht_api.url}/api/v1/hydrate", params=params, auth=cht_api.online, timeout=30)
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "reason": "`doc_ids` parameter must be a json array."}


def test_hydrate_empty_array(cht_api):
    r = requests.post(f"{cht_api.url}/api/v1/hydrate", json={"doc_ids": []}, auth=cht_api.online, timeout=30)
    assert (r.status_code, r.json()) == (200, [])


# -- contacts-by-phone (§2.4) --------------------------------------------------------------------
@pytest.mark.parametrize("phone", ["0712345678", "+254712345678", "+254 712 345 678"])
def test_contacts_by_phone_normalises_and_hydrates(seeded, phone):
    r = requests.get(f"{seeded.url}/api/v1/contacts-by-phone", params={"phone": phone}, auth=seeded.online)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert [d["_id"] for d in body["docs"]] == ["chw1"]
    assert body["docs"][0]["parent"]["name"] == "Health Center One"


def test_contacts_by_phone_post_and_no_match(seeded):
    r = requests.post(f"{seeded.url}/api/v1/contacts-by-phone", json={"phone": "0712345678"}, auth=seeded.online)
    assert r.status_code == 200 and r.json()["docs"][0]["_id"] == "chw1"
    r = requests.get(f"{seeded.url}/api/v1/contacts-by-phone", params={"phone": "0799999999"}, auth=seeded.online)
    assert (r.status_code, r.json()) == (404, {"error": "not_found", "reason": "no matches found"})


@pytest.mark.parametrize("params", [{"phone": "abc"}, {"phone": "123"}, {}])
def test_contacts_by_phone_invalid_is_400(cht_api, params):
    r = requests.get(f"{cht_api.url}/api/v1/contacts-by-phone", params=params, auth=cht_api.online, timeout=30)
    assert r.status_code == 400
    assert r.json() == {
        "error": "bad_request",
        "reason": "`phone` parameter is required and must be a valid phone number",
    }


# -- legacy people and places (§2.5) -------------------------------------------------------------
def test_people_create_minifies_place_into_parent(seeded):
    r = requests.post(
        f"{seeded.url}/api/v1/people",
        json={"name": "New Person", "place": "clinic1", "sex": "female"},
        auth=seeded.online,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["rev"].startswith("1-")
    doc = seeded.db.get(body["id"])
    assert doc["type"] == "person" and doc["sex"] == "female" and "place" not in doc
    assert doc["parent"] == lineage("clinic1", "hc1", "dh1")
    assert isinstance(doc["reported_date"], int)


@pytest.mark.parametrize(
    "body,message",
    [
        ({"place": "clinic1"}, 'Person is missing a "name" property.'),
        ({"name": "X", "type": "clinic"}, "Wrong type, this is not a person."),
        ({"name": 5}, 'Property "name" must be a string.'),
        ({"name": "X", "reported_date": "not a date"}, "Reported date is invalid: not a date"),
    ],
)
def test_people_validation_is_400(seeded, body, message):
    r = requests.post(f"{seeded.url}/api/v1/people", json=body, auth=seeded.online, headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (400, {"code": 400, "error": message})


def test_people_needs_can_create_people(seeded):
    r = requests.post(f"{seeded.url}/api/v1/people", json={"name": "X"}, auth=seeded.db.user, headers=JSON)
    assert (r.status_code, r.json()) == (403, {"code": 403, "error": "Insufficient privileges"})


def test_places_create_with_inline_parent_and_contact(seeded):
    body = {
        "name": "New Clinic",
        "type": "clinic",
        "parent": {"name": "New HC", "type": "health_center", "parent": "dh1"},
        "contact": {"name": "Head Hank", "phone": "+254700000001"},
    }
    r = requests.post(f"{seeded.url}/api/v1/places", json=body, auth=seeded.online, timeout=30)
    assert r.status_code == 200
    assert set(r.json()) == {"id", "rev"}
    clinic = seeded.db.get(r.json()["id"])
    hc = seeded.db.get(clinic["parent"]["_id"])
    assert hc["name"] == "New HC" and hc["parent"] == {"_id": "dh1"}
    assert clinic["parent"] == {"_id": hc["_id"], "parent": {"_id": "dh1"}}
    head = seeded.db.get(clinic["contact"]["_id"])
    assert head["name"] == "Head Hank" and head["type"] == "person"


def test_places_wrong_hierarchy_is_400(seeded):
    body = {"name": "Bad HC", "type": "health_center", "parent": "clinic1"}
    r = requests.post(f"{seeded.url}/api/v1/places", json=body, auth=seeded.online, headers=JSON, timeout=30)
    assert r.status_code == 400
    assert r.json() == {
        "code": 400,
        "error": 'health_center "" should have one of the following parent types: "district_hospital".',
    }


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"type": "clinic", "parent": "hc1"}, 400, 'Place  is missing a "name" property.'),
        ({"name": "X", "type": "person"}, 400, "Wrong type, object  is not a place."),
        ({"name": "X", "type": "clinic"}, 400, 'Place  is missing a "parent" property.'),
        ({"name": "X", "type": "clinic", "parent": "nothing"}, 404, "Failed to find place."),
    ],
)
def test_places_validation(seeded, body, status, message):
    r = requests.post(f"{seeded.url}/api/v1/places", json=body, auth=seeded.online, headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (status, {"code": status, "error": message})


# -- datasource (§2.6) ---------------------------------------------------------------------------
def test_get_person_and_404s(seeded):
    r = requests.get(f"{seeded.url}/api/v1/person/pat1", auth=seeded.online, headers=JSON, timeout=30)
    assert r.status_code == 200 and r.json()["parent"] == lineage("clinic1", "hc1", "dh1")
    for uuid in ("nobody", "clinic1"):
        r = requests.get(f"{seeded.url}/api/v1/person/{uuid}", auth=seeded.online, headers=JSON, timeout=30)
        assert (r.status_code, r.json()) == (404, {"code": 404, "error": "Person not found"})


def test_get_person_with_lineage_and_place(seeded):
    r = requests.get(f"{seeded.url}/api/v1/person/pat1", params={"with_lineage": "true"}, auth=seeded.online)
    parent = r.json()["parent"]
    assert parent["name"] == "Household One" and parent["contact"]["name"] == "Patient Pam"
    assert parent["parent"]["contact"]["name"] == "CHW Carol"
    assert parent["parent"]["parent"]["name"] == "District One"
    r = requests.get(f"{seeded.url}/api/v1/place/hc1", auth=seeded.online, timeout=30)
    assert r.status_code == 200 and r.json()["contact"] == lineage("chw1", "hc1", "dh1")


def test_get_person_needs_can_view_contacts(seeded):
    r = requests.get(f"{seeded.url}/api/v1/person/pat1", auth=seeded.db.user, headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (403, {"code": 403, "error": "Insufficient privileges"})


def test_post_person_returns_the_full_doc(seeded):
    body = {"name": "Dana", "type": "person", "parent": "clinic1", "phone": "+254700000002", "reported_date": 1000}
    r = requests.post(f"{seeded.url}/api/v1/person", json=body, auth=seeded.online, headers=JSON, timeout=30)
    assert r.status_code == 200
    doc = r.json()
    assert doc["_rev"].startswith("1-") and doc["type"] == "person" and doc["reported_date"] == 1000
    assert doc["parent"] == lineage("clinic1", "hc1", "dh1")
    assert seeded.db.get(doc["_id"]) == doc


@pytest.mark.parametrize(
    "body,message",
    [
        ({"name": "A", "type": "person", "parent": "clinic1", "_id": "x"}, "_id is not allowed for create operations."),
        (
            {"name": "A", "type": "person", "parent": "clinic1", "_rev": "1-a"},
            "_rev is not allowed for create operations.",
        ),
        ({"name": "A", "type": "person"}, None),
        ({"name": "A", "type": "person", "parent": "pat1"}, None),
        ({"name": "A", "type": "clinic", "parent": "hc1"}, None),
    ],
)
def test_post_person_5_2_rules_are_400(seeded, body, message):
    r = requests.post(f"{seeded.url}/api/v1/person", json=body, auth=seeded.online, headers=JSON, timeout=30)
    assert r.status_code == 400
    assert r.json()["code"] == 400
    if message:
        assert r.json()["error"] == message
    assert [d for d in seeded.db.all_docs() if d.get("name") == "A"] == []


# -- /medic proxy (§2.9) -------------------------------------------------------------------------
def test_medic_proxy_reads_with_the_callers_credentials(seeded):
    r = requests.get(f"{seeded.url}/medic/pat1", auth=seeded.online, timeout=30)
    assert r.status_code == 200 and r.json()["name"] == "Patient Pam"
    r = requests.post(f"{seeded.url}/medic/_all_docs", json={"keys": ["pat1"]}, auth=seeded.online, timeout=30)
    assert r.status_code == 200 and r.json()["rows"][0]["id"] == "pat1"
    r = requests.get(
        f"{seeded.url}/medic/_design/medic-client/_view/contacts_by_phone",
        params={"key": json.dumps(CHW_PHONE)},
        auth=seeded.online,
        timeout=30,
    )
    assert [row["id"] for row in r.json()["rows"]] == ["chw1"]
    r = requests.get(f"{seeded.url}/medic/_changes", params={"limit": 2}, auth=seeded.online, timeout=30)
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_medic_proxy_writes_need_can_edit(seeded):
    r = requests.put(f"{seeded.url}/medic/w1", json={"x": 1}, auth=seeded.db.user, headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (403, {"code": 403, "error": "Insufficient privileges"})
    r = requests.post(f"{seeded.url}/medic/_bulk_docs", json={"docs": [{}]}, auth=seeded.db.user, timeout=30)
    assert r.status_code == 403
    r = requests.put(f"{seeded.url}/medic/w1", json={"x": 1}, auth=seeded.online, timeout=30)
    assert r.status_code == 201 and seeded.db.get("w1")["x"] == 1


# -- logging ---------------------------------------------------------------------------------------
def test_logs_hold_no_payloads(seeded, caplog):
    caplog.set_level(logging.INFO, logger="standins.cht_api")
    post_record(
        seeded, {"_meta": {"form": "LTFU_FOLLOWUP", "from": CHW_PHONE}, "patient_uuid": "pat1", "reason": "SECRET"}
    )
    requests.get(f"{seeded.url}/api/v1/contacts-by-phone", params={"phone": CHW_PHONE}, auth=seeded.online)
    text = caplog.text
    assert "POST /api/v2/records -> 200 user=" + seeded.online[0] in text
    assert "SECRET" not in text and "712345678" not in text


def test_generated_sandbox_data_works_through_the_api(cht_api):
    """The synthetic stream (standins/seed.py) is readable through hydrate and phone lookup."""
    cht_api.db.seed(150)
    docs = cht_api.db.all_docs()
    chw = next(d for d in docs if d.get("type") == "person" and d.get("role") == "chw" and d.get("phone"))
    report = next(d for d in docs if d.get("type") == "data_record" and d.get("form"))
    r = requests.get(f"{cht_api.url}/api/v1/contacts-by-phone", params={"phone": chw["phone"]}, auth=cht_api.online)
    assert r.status_code == 200 and chw["_id"] in [d["_id"] for d in r.json()["docs"]]
    r = requests.post(f"{cht_api.url}/api/v1/hydrate", json={"doc_ids": [report["_id"]]}, auth=cht_api.online)
    hydrated = r.json()[0]["doc"]
    assert hydrated["contact"]["_id"] == report["contact"]["_id"] and "name" in hydrated["contact"]


def test_put_person_updates_the_whole_doc_with_the_5_2_rules(seeded):
    url = f"{seeded.url}/api/v1/person/pat1"
    doc = requests.get(url, auth=seeded.online, headers=JSON, timeout=30).json()
    doc["emr_patient_id"] = "emr-1"
    doc.pop("phone", None)  # a property left out is deleted
    r = requests.put(url, json=doc, auth=seeded.online, headers=JSON, timeout=30)
    assert r.status_code == 200 and r.json()["_rev"].startswith("2-")
    stored = seeded.db.get("pat1")
    assert stored == r.json() and stored["emr_patient_id"] == "emr-1" and "phone" not in stored
    for key, value in (("_rev", doc["_rev"]), ("parent", "clinic1"), ("type", "clinic"), ("name", "")):
        r = requests.put(url, json={**stored, key: value}, auth=seeded.online, headers=JSON, timeout=30)
        assert r.status_code == 400 and r.json()["code"] == 400, (key, r.text)
    r = requests.put(f"{seeded.url}/api/v1/person/clinic1", json=stored, auth=seeded.online, headers=JSON, timeout=30)
    assert (r.status_code, r.json()) == (404, {"code": 404, "error": "Person not found"})
    r = requests.put(url, json=stored, auth=seeded.db.user, headers=JSON, timeout=30)
    assert r.status_code == 403
    assert seeded.db.get("pat1")["_rev"] == stored["_rev"]
