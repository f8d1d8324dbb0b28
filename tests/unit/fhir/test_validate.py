from cht_bridge.fhir.ids import reference, resource_id
from cht_bridge.fhir.validate import problems


def patient(**changes):
    return {"resourceType": "Patient", "id": resource_id("Patient", "p1"), "gender": "female", **changes}


def referral(subject):
    return {
        "resourceType": "ServiceRequest",
        "id": resource_id("ServiceRequest", "r1"),
        "status": "active",
        "intent": "order",
        "subject": {"reference": subject},
    }


def test_ids_are_stable_uuids_per_type_and_document():
    assert resource_id("Patient", "p1") == resource_id("Patient", "p1")
    assert resource_id("Patient", "p1") != resource_id("ServiceRequest", "p1")
    assert len(resource_id("Patient", "p1")) == 36
    assert reference("Patient", "p1") == "Patient/" + resource_id("Patient", "p1")


def test_a_valid_payload_has_no_problems():
    assert problems([patient(), referral(reference("Patient", "p1"))]) == []


def test_a_wrong_gender_code_is_named():
    (reason,) = problems([patient(gender="F")])
    assert "gender 'F' is not one of male, female, other, unknown" in reason


def test_a_dangling_reference_is_refused_unless_the_ledger_knows_it():
    lone = [referral(reference("Patient", "p9"))]
    (reason,) = problems(lone)
    assert "subject refers to Patient/" in reason
    assert problems(lone, known=lambda ref: ref == reference("Patient", "p9")) == []


def test_the_r4_models_refuse_unknown_elements_and_missing_required_ones():
    reasons = problems([{"resourceType": "ServiceRequest", "id": "x", "colour": "red"}])
    assert any("colour" in r for r in reasons)
    assert "ServiceRequest/x: subject: Field required" in reasons
    assert problems([{"id": "x"}]) == ["resource 0: not a FHIR resource (no resourceType)"]
    assert problems([{"resourceType": "Nonsense"}]) == ["Nonsense/0: 'Nonsense' is not a FHIR R4 resource type"]
