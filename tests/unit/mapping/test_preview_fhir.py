"""``python -m cht_bridge.mapping preview`` on a FHIR pipeline: the resources of each document,
validated as the destination validates them, or the reasons they would be refused."""

from __future__ import annotations

import yaml

from cht_bridge.fhir.ids import reference
from tests.unit.fhir.hydrated import hydrated_reports
from tests.unit.mapping.test_preview_cli import run_preview

SYSTEM = "https://cht.example.org/id"


def write_pipeline(tmp_path, resources, name="refs"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "start_date": "2026-01-01",
                "cht": {"conn_id": "c"},
                "destination": {"conn_id": "d", "path": "/fhir"},
                "relevant_to": "doc.form === 'assessment' && doc.fields.referral === 'yes'",
                "fhir": {"identifier_system": SYSTEM, "resources": resources},
            }
        )
    )
    return path


def test_preview_shows_the_validated_resources_of_each_referral(tmp_path):
    docs = hydrated_reports(form="assessment")
    config = write_pipeline(
        tmp_path,
        [
            {"template": "patient", "from": "doc.patient"},
            {"template": "practitioner", "from": "doc.contact"},
            {"template": "service_request", "fields": {"reason": {"path": "doc.fields.symptoms", "optional": True}}},
        ],
    )
    proc, lines = run_preview(tmp_path, config, docs)
    assert proc.returncode == 0, proc.stderr
    assert [line["id"] for line in lines] == [d["_id"] for d in docs]
    relevant = [line for line in lines if line["relevant"]]
    assert len(relevant) == sum(1 for d in docs if d["fields"].get("referral") == "yes") > 0
    for line in relevant:
        assert line["valid"] is True, line.get("refused") or line.get("error")
        patient, practitioner, request = line["payload"]
        doc = next(d for d in docs if d["_id"] == line["id"])
        assert patient["resourceType"] == "Patient" and practitioner["resourceType"] == "Practitioner"
        assert {"system": SYSTEM, "value": doc["patient"]["_id"]} in patient["identifier"]
        assert request["subject"] == {"reference": reference("Patient", doc["patient"]["_id"])}
        assert request["requester"] == {"reference": reference("Practitioner", doc["contact"]["_id"])}
    assert all("valid" not in line and "payload" not in line for line in lines if not line["relevant"])


def test_preview_shows_why_a_payload_would_be_refused(tmp_path):
    docs = [d for d in hydrated_reports(form="assessment") if d["fields"].get("referral") == "yes"][:3]
    config = write_pipeline(
        tmp_path,
        [
            {"template": "practitioner", "from": "doc.contact"},
            {"template": "service_request", "fields": {"priority": {"expr": "'routine'"}}},
        ],
    )
    proc, lines = run_preview(tmp_path, config, docs)
    assert proc.returncode == 0, proc.stderr
    assert len(lines) == 3
    for line, doc in zip(lines, docs, strict=True):
        target = reference("Patient", doc["patient"]["_id"])
        assert line["refused"] == [
            f"ServiceRequest/{line['payload'][1]['id']}: subject refers to {target}, which is neither in this "
            "payload nor delivered"
        ]
        assert "valid" not in line


def test_preview_names_a_template_failure(tmp_path):
    (doc,) = [d for d in hydrated_reports(form="assessment") if d["fields"].get("referral") == "yes"][:1]
    doc["patient"]["date_of_birth"] = "not a date"
    config = write_pipeline(tmp_path, [{"template": "patient", "from": "doc.patient"}])
    proc, lines = run_preview(tmp_path, config, [doc])
    assert proc.returncode == 0, proc.stderr
    assert lines == [
        {
            "id": doc["_id"],
            "pipeline": "refs",
            "relevant": True,
            "error": f"FHIR template error for 'refs/resources.0.date_of_birth' on source document '{doc['_id']}': "
            "is not a date (YYYY-MM-DD)",
        }
    ]
