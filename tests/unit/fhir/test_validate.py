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


SYSTEM = "https://cht.example.org/id"


def test_a_patient_without_an_identifier_in_the_pipelines_system_is_refused():
    bare = patient()
    other = patient(identifier=[{"system": "https://elsewhere.example/id", "value": "p1"}])
    good = patient(identifier=[{"system": SYSTEM, "value": "p1"}])
    assert problems([bare]) == []  # not checked without a system
    (reason,) = problems([bare], identifier_system=SYSTEM)
    assert reason == f"Patient/{bare['id']}: identifier: none in the system {SYSTEM} (the CHT id)"
    assert len(problems([other], identifier_system=SYSTEM)) == 1
    assert problems([good], identifier_system=SYSTEM) == []


def test_status_intent_and_priority_codes_the_models_let_through():
    request = referral(reference("Patient", "p1")) | {"status": "open", "priority": "high"}
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "orders",
        "priority": "urgent",
        "for": {"reference": reference("Patient", "p1")},
    }
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "done", "class": {"code": "HH"}}
    observation = {"resourceType": "Observation", "id": "o1", "status": "bogus!", "code": {"text": "t"}}
    reasons = problems([patient(), request, task, encounter, observation])
    assert reasons == [
        f"ServiceRequest/{request['id']}: status 'open' is not one of draft, active, on-hold, revoked, completed, entered-in-error, unknown",
        f"ServiceRequest/{request['id']}: priority 'high' is not one of routine, urgent, asap, stat",
        "Task/t1: intent 'orders' is not one of unknown, proposal, plan, order, original-order, reflex-order, filler-order, instance-order, option",
        "Encounter/e1: status 'done' is not one of planned, arrived, triaged, in-progress, onleave, finished, cancelled, entered-in-error, unknown",
        "Observation/o1: status (a value that is not a code) is not one of registered, preliminary, final, amended, corrected, cancelled, entered-in-error, unknown",
    ]


def test_a_reference_to_the_wrong_kind_of_resource_and_a_repeated_resource():
    request = referral(reference("Practitioner", "chw"))
    practitioner = {"resourceType": "Practitioner", "id": resource_id("Practitioner", "chw")}
    assert problems([practitioner, request]) == [
        f"ServiceRequest/{request['id']}: subject must refer to Patient or Group or Location or Device, not Practitioner"
    ]
    (reason,) = problems([patient(), patient()])
    assert reason.endswith("appears twice in the payload")


def test_references_inside_a_bundle_resolve_to_entry_full_urls():
    def bundle(subject):
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": patient(gender="F"),
                 "request": {"method": "PUT", "url": "Patient/x"}},
                {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": referral(subject),
                 "request": {"method": "POST", "url": "ServiceRequest"}},
            ],
        }  # fmt: skip

    reasons = problems([bundle("urn:uuid:11111111-1111-4111-8111-111111111111")])
    assert reasons == [
        f"Bundle/0 entry.0 Patient/{patient()['id']}: gender 'F' is not one of male, female, other, unknown"
    ]
    (dangling,) = problems([bundle("urn:uuid:99999999-9999-4999-8999-999999999999")])[1:]
    assert "subject refers to urn:uuid:99999999-9999-4999-8999-999999999999" in dangling


def test_reasons_name_elements_and_codes_not_patient_values():
    secret = patient(
        name=[{"text": "Wanjiru Kamau"}], birthDate="17/04/1990", telecom=[{"system": "phone", "value": 7}]
    )
    reasons = problems([secret], identifier_system=SYSTEM)
    assert reasons and all("Wanjiru" not in r and "1990" not in r for r in reasons)
    assert any("birthDate" in r for r in reasons)


def test_resources_built_by_expr_mappings_are_validated_the_same_way():
    """A raw mapping still works: one resource from dotted keys, or a list from one expr."""
    from cht_bridge.fhir.validate import as_resources
    from cht_bridge.mapping import Mapper

    doc = {"_id": "p1", "type": "person", "name": "Achieng", "sex": "F"}
    one = Mapper(
        "raw", "true",
        {"resourceType": {"expr": "'Patient'"}, "id": {"expr": "'pat-' + doc._id"}, "gender": "doc.sex",
         "identifier.0.system": {"expr": "'https://cht.example.org/id'"}, "identifier.0.value": "doc._id"},
    )  # fmt: skip
    listed = Mapper(
        "raw_list", "true",
        {"resources": {"expr": "[{resourceType: 'Patient', id: 'pat-' + doc._id, gender: 'female'},"
                               " {resourceType: 'Flag', id: 'flag-' + doc._id, status: 'active', code: {text: 'x'},"
                               "  subject: {reference: 'Patient/pat-' + doc._id}}]"}},
    )  # fmt: skip
    try:
        (single,) = one.map([doc])
        (many,) = listed.map([doc])
    finally:
        one.close()
        listed.close()
    assert as_resources(single.payload) == [single.payload]
    assert problems(as_resources(single.payload), identifier_system=SYSTEM) == [
        "Patient/pat-p1: gender 'F' is not one of male, female, other, unknown"
    ]
    assert [r["resourceType"] for r in as_resources(many.payload)] == ["Patient", "Flag"]
    assert problems(as_resources(many.payload)) == []
    assert as_resources(patient()) == [patient()] and as_resources([patient()]) == [patient()]


def test_transaction_and_batch_bundle_rules_the_models_do_not_check():
    pat, req = patient(), referral(reference("Patient", "p1"))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": pat},
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": req,
             "request": {"method": "POST", "url": "ServiceRequest"}},
        ],
    }  # fmt: skip
    assert problems([transaction]) == [
        "Bundle/0: entry.0: a transaction entry needs request.method and request.url",
        "Bundle/0: entry.1: fullUrl urn:uuid:11111111-1111-4111-8111-111111111111 is also entry.0's",
    ]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": pat, "request": {"method": "PUT", "url": f"Patient/{pat['id']}"}},
            {"resource": req, "request": {"method": "POST", "url": "ServiceRequest"}},
        ],
    }
    assert problems([batch]) == [
        f"Bundle/0: entry.1: subject refers to another entry of the batch ({reference('Patient', 'p1')})"
    ]


def test_an_identifier_system_must_be_an_absolute_uri():
    (reason,) = problems([patient(identifier=[{"system": "cht", "value": "p1"}])])
    assert reason.endswith("identifier.0.system 'cht' is not an absolute URI")
    assert problems([patient(identifier=[{"system": "urn:oid:1.2.3", "value": "p1"}])]) == []


ODD_SHAPES = {
    "identifier is a number": patient(identifier=5),
    "identifier entries are strings": patient(identifier=["abc"]),
    "a reference that is not a string": referral(7) | {"subject": {"reference": 7}},
    "an entry list that is a number": {"resourceType": "Bundle", "id": "b", "type": "transaction", "entry": 5},
    "entries that are strings": {"resourceType": "Bundle", "id": "b", "type": "batch", "entry": ["x", 3]},
    "an id that is an object": patient(id={"x": 1}),
    "a code that is a list": patient(gender=["female"]),
    "name is a number": patient(name=5, identifier=[{"system": SYSTEM, "value": "p1"}]),
}


def test_problems_is_total_over_odd_shapes_each_a_reason_never_an_exception():
    for label, resource in ODD_SHAPES.items():
        found = problems([resource], identifier_system=SYSTEM)
        assert found and all(isinstance(r, str) and r for r in found), label
    assert any("identifier" in r for r in problems([patient(identifier=5)], identifier_system=SYSTEM))


def test_a_coded_value_is_quoted_only_when_it_looks_like_a_code():
    (phone,) = problems([patient(gender="+254 712 345 678")])
    assert "712" not in phone and "gender (a value that is not a code) is not one of" in phone
    (words,) = problems([patient(gender="she said she is fine")])
    assert "fine" not in words and "not a code" in words
    (code,) = problems([patient(gender="F")])
    assert "gender 'F' is not one of" in code
