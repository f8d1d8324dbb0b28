"""What the FHIR destination's tests share: hand-built resources, a referral pipeline, searches.

Until the declarative templates land, a referral's payload is built with ``expr``: the Patient of
the report's (hydrated) ``patient``, then the ServiceRequest referring to it, as the templates will.
"""

from __future__ import annotations

import uuid
from typing import Any

import requests


def new_system() -> str:
    """An identifier system of one test: its resources on the shared server are its alone."""
    return f"https://cht-bridge.test/{uuid.uuid4().hex[:12]}/doc-id"


def patient(system: str, cht_id: str, gender: str = "female", **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p-{cht_id}",
        "identifier": [{"system": system, "value": cht_id}],
        "gender": gender,
        **more,
    }


def referral(system: str, cht_id: str, patient_cht_id: str, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": f"sr-{cht_id}",
        "identifier": [{"system": system, "value": cht_id}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/p-{patient_cht_id}"},
        **more,
    }


def referral_pipeline(name: str, db: str, system: str, **destination: Any) -> dict[str, Any]:
    """Assessments that ended in a referral → ``[Patient, ServiceRequest]`` into a FHIR server."""
    patient_expr = (
        "({resourceType: 'Patient', id: 'p-' + doc.patient._id,"
        f" identifier: [{{system: '{system}', value: doc.patient._id}}],"
        " name: [{text: doc.patient.name}], gender: doc.patient.sex, birthDate: doc.patient.date_of_birth})"
    )
    request_expr = (
        "({resourceType: 'ServiceRequest', id: 'sr-' + doc._id,"
        f" identifier: [{{system: '{system}', value: doc._id}}], status: 'active', intent: 'order',"
        " subject: {reference: 'Patient/p-' + doc.patient._id},"
        " authoredOn: new Date(doc.reported_date).toISOString(),"
        " reasonCode: [{text: doc.fields.symptoms || 'referral'}]})"
    )
    return {
        "name": name,
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht_fhir_test", "db": db},
        "relevant_to": "doc.type === 'data_record' && doc.form === 'assessment' && doc.fields.referral === 'yes'",
        "mapping": {"resources": {"expr": f"[{patient_expr}, {request_expr}]"}},
        "destination": {
            "type": "fhir",
            "conn_id": "fhir_test",
            "auth": {"type": "basic"},
            "batch_size": 2,
            "timeout": 30,
            "fhir": {"identifier_system": system},
            **destination,
        },
        "batch_size": 10,
        "delivery": {"retries": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    }


def search(fhir: Any, resource_type: str, system: str, value: str = "") -> list[dict[str, Any]]:
    """The resources of ``resource_type`` with an identifier ``system|value`` (any value when empty)."""
    with fhir.session() as session:
        r = session.get(
            f"{fhir.url}/{resource_type}", params={"identifier": f"{system}|{value}", "_count": 1000}, timeout=60
        )
    r.raise_for_status()
    return [entry["resource"] for entry in r.json().get("entry", [])]


def read(fhir: Any, reference: str) -> dict[str, Any]:
    with fhir.session() as session:
        r = session.get(f"{fhir.url}/{reference}", timeout=30)
    r.raise_for_status()
    return r.json()


def fhir_session(fhir: Any) -> requests.Session:
    session = requests.Session()
    session.auth = fhir.credentials
    return session
