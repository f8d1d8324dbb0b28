"""Every real outbound config of cht.md §1.11 maps exactly as CHT would.

The configs live in ``standins/app_settings.json`` and are read through the same importer
and preview path people use, so this also proves an existing CHT outbound config runs unchanged.
"""

import re
from pathlib import Path

import pytest

from cht_bridge.mapping.preview import load_pipelines, preview

APP_SETTINGS = Path(__file__).resolve().parents[3] / "standins" / "app_settings.json"

PATIENT = {
    "_id": "p-uuid-1",
    "_rev": "2-a",
    "type": "person",
    "role": "patient",
    "name": "Wanjiru Kamau",
    "short_name": "Wanjiru",
    "sex": "female",
    "date_of_birth": "1994-03-02",
    "patient_id": "40213",
    "phone": "+254712345678",
    "parent": {"_id": "clinic-1", "name": "Household 1", "parent": {"_id": "hc-1"}},
}
CHW = {
    "_id": "chw-uuid-1",
    "type": "person",
    "role": "chw",
    "name": "Otieno Ouma",
    "short_name": "Otis",
    "sex": "male",
    "date_of_birth": "1988-07-09",
    "parent": {"_id": "hc-1"},
}
NURSE_NO_PHONE = {**CHW, "_id": "nurse-1", "role": "nurse", "name": "Njeri", "short_name": "N"}
FOLLOW_UP = {
    "_id": "r-fu-1",
    "type": "data_record",
    "form": "interop_follow_up",
    "reported_date": 1767225600000,
    "fields": {"inputs": {"contact": {"_id": "p-uuid-1", "name": "Wanjiru Kamau"}}},
    "contact": {"_id": "chw-uuid-1", "parent": {"_id": "hc-1"}},
}
PREGNANCY = {
    "_id": "r-preg-1",
    "type": "data_record",
    "form": "pregnancy",
    "reported_date": 1767225600000,
    "fields": {"inputs": {"contact": {"_id": "p-uuid-1"}}, "danger_signs": "no", "anc_visits": 2},
}
INTEROP_PATIENT = {
    "_id": "r-ip-1",
    "type": "data_record",
    "form": "INTEROP_PATIENT",
    "patient_id": "40213",
    "fields": {"external_id": "EMR-77"},
}
TRACE = {
    "_id": "r-tr-1",
    "type": "data_record",
    "form": "covid_trace_follow_up",
    "reported_date": 1767225600000,
    "fields": {"trace": {"symptom": "no"}, "inputs": {"contact": {"phone": "+254700000001", "surname": "Mutua"}}},
}
TRACE_SYMPTOM = {**TRACE, "_id": "r-tr-2", "fields": {**TRACE["fields"], "trace": {"symptom": "yes"}}}
TEST_DOC = {"_id": "t-1", "_rev": "1-z", "type": "data_record", "form": "test"}

DOCS = [PATIENT, CHW, NURSE_NO_PHONE, FOLLOW_UP, PREGNANCY, INTEROP_PATIENT, TRACE, TRACE_SYMPTOM, TEST_DOC]


@pytest.fixture(scope="module")
def results():
    pipelines = load_pipelines(APP_SETTINGS)
    out = {}
    for line in preview(pipelines, DOCS):
        out[(line["pipeline"], line["id"])] = line
    return out


def relevant_ids(results, pipeline):
    return sorted(doc_id for (p, doc_id), line in results.items() if p == pipeline and line["relevant"])


def test_every_push_is_imported(results):
    names = {p for p, _ in results}
    assert names == {
        "fhir_patient",
        "fhir_practitioner",
        "fhir_encounter",
        "patient",
        "pregnancy_encounter",
        "patient_ids",
        "textit_self_quarantine",
        "test",
    }


def test_fhir_patient(results):
    assert relevant_ids(results, "fhir_patient") == ["p-uuid-1"]
    assert results[("fhir_patient", "p-uuid-1")]["payload"] == {
        "resourceType": "Patient",
        "identifier": [{"system": "cht", "use": "official", "value": "p-uuid-1"}],
        "name": [{"use": "official", "family": "Wanjiru Kamau", "given": ["Wanjiru"]}],
        "gender": "female",
        "birthDate": "1994-03-02",
    }


def test_fhir_practitioner_with_dotted_keys_optional_telecom_and_constant_true(results):
    assert relevant_ids(results, "fhir_practitioner") == ["chw-uuid-1", "nurse-1"]
    nurse = results[("fhir_practitioner", "nurse-1")]["payload"]
    assert nurse == {
        "resourceType": "Practitioner",
        "gender": "male",
        "name": [{"use": "official", "family": "Njeri", "given": ["N"]}],
        "identifier": {"use": "usual", "value": "cht/nurse-1"},
        "birthDate": "1988-07-09",
        "active": True,
    }
    assert "telecom" not in nurse  # optional expr evaluated to undefined: left out


def test_fhir_encounter(results):
    assert relevant_ids(results, "fhir_encounter") == ["r-fu-1"]
    assert results[("fhir_encounter", "r-fu-1")]["payload"] == {
        "resourceType": "Encounter",
        "identifier": [{"use": "official", "value": "p-uuid-1"}],
        "subject": {"reference": "Patient/?identifier=p-uuid-1"},
        "status": "finished",
        "class": "outpatient",
        "type": [{"text": "Community health worker visit"}],
        "participant": [{"type": [{"text": "attender"}], "individual": {"reference": "Practitioner/chw-uuid-1"}}],
    }


def test_docs_patient_push_nests_destination_keys_under_doc(results):
    assert relevant_ids(results, "patient") == ["p-uuid-1"]
    assert results[("patient", "p-uuid-1")]["payload"] == {
        "doc": {
            "_id": "p-uuid-1",
            "name": "Wanjiru Kamau",
            "patient_id": "40213",
            "date_of_birth": "1994-03-02",
            "phone": "+254712345678",
            "parent": "clinic-1",
        }
    }


def test_docs_encounter_with_numbered_observations_and_false_values(results):
    assert results[("pregnancy_encounter", "r-preg-1")]["payload"] == {
        "id": "r-preg-1",
        "patient_uuid": "p-uuid-1",
        "reported_date": 1767225600000,
        "observations": [
            {"code": "danger_signs", "valueCode": False},
            {"code": "anc_visits", "valueCode": "LA33-6"},
        ],
    }


def test_docs_patient_id_callback(results):
    assert results[("patient_ids", "r-ip-1")]["payload"] == {"doc": {"patient_id": "40213", "external_id": "EMR-77"}}


def test_rapidpro_flow_start(results):
    assert relevant_ids(results, "textit_self_quarantine") == ["r-tr-1"]
    payload = results[("textit_self_quarantine", "r-tr-1")]["payload"]
    assert payload["urns"] == ["tel:+254700000001"]
    assert payload["extra"] == {"self_quarantine_enrollment": "2026-01-01", "name": "Mutua"}
    assert re.fullmatch(r"[0-9a-f-]{36}", payload["flow"])


def test_cht_core_integration_minimal_config(results):
    assert results[("test", "t-1")]["payload"] == {"id": "t-1", "rev": "1-z"}


def test_required_path_missing_fails_like_cht(results):
    # The FHIR_encounter config on a pregnancy doc is not relevant; the docs' encounter config
    # on a pregnancy without inputs.contact fails with CHT's own message.
    line = next(preview(load_pipelines(APP_SETTINGS)[4:5], [{**PREGNANCY, "_id": "r-x", "fields": {}}]))
    assert line["error"] == (
        "Mapping error for 'pregnancy_encounter/patient_uuid' on source document 'r-x': "
        "cannot find 'doc.fields.inputs.contact._id' on source document"
    )
