"""The DHIS2 stand-in keeps destinations.md §1: auth, both response shapes, import summaries with
DHIS2's conflicts, natural-key upsert, the tracker's UID rules and validation report, paged reads."""

from __future__ import annotations

import pytest
import requests

from standins.dhis2 import DEFAULT_COC, Dhis2, Metadata

pytestmark = pytest.mark.integration

USER = {"username": "admin", "password": "district", "token": "d2pat_abcdefghijklmnopqrstuvwxyz0123456789"}
ROOT, OU_A, OU_B, OUTSIDE = "ImspTQPwCqd", "DiszpKrYNg8", "Rp268JB6Ne4", "OutsideOu01"
DE_1, DE_2, COC_F = "f7n9E0hX8qk", "Ix2HsbDMLea", "bRowv6yZOF2"
DS = "pBOMPrpg1QX"
EV_PROGRAM, EV_STAGE, TR_PROGRAM, TR_STAGE, TET, ATTR = (
    "eBAyeGv0exc", "Zj7UnCAulEk", "IpHINAT79UW", "A03MvHHogjR", "nEenWmSyUEp", "w75KJ2mc4zz",
)  # fmt: skip
EV_DE = "qrur9Dvnyt5"


def metadata() -> Metadata:
    md = Metadata(
        {
            "organisationUnits": [
                {"id": ROOT, "code": "ROOT", "name": "Root"},
                {"id": OU_A, "code": "OU_A", "name": "Facility A", "parent": {"id": ROOT}},
                {"id": OU_B, "code": "OU_B", "name": "Facility B", "parent": {"id": ROOT}},
                {"id": OUTSIDE, "code": "OUT", "name": "Elsewhere"},
            ],
            "dataElements": [
                {"id": DE_1, "code": "DE_ONE", "name": "ANC 1st visit"},
                {"id": DE_2, "code": "DE_TWO", "name": "Referrals"},
                {"id": EV_DE, "code": "EV_DE", "name": "Temperature", "domainType": "TRACKER"},
            ],
            "categoryOptionCombos": [{"id": COC_F, "code": "FEMALE", "name": "Female"}],
            "dataSets": [
                {
                    "id": DS,
                    "code": "DS",
                    "name": "CHT monthly",
                    "periodType": "Monthly",
                    "dataSetElements": [{"dataElement": {"id": DE_1}}, {"dataElement": {"id": DE_2}}],
                },
            ],  # fmt: skip
            "trackedEntityTypes": [{"id": TET, "name": "Person"}],
            "trackedEntityAttributes": [{"id": ATTR, "name": "Name"}],
            "programs": [
                {
                    "id": EV_PROGRAM,
                    "name": "Assessments",
                    "programType": "WITHOUT_REGISTRATION",
                    "programStages": [{"id": EV_STAGE}],
                    "organisationUnits": [{"id": OU_A}, {"id": OU_B}, {"id": OUTSIDE}],
                },
                {
                    "id": TR_PROGRAM,
                    "name": "ANC",
                    "programType": "WITH_REGISTRATION",
                    "trackedEntityType": {"id": TET},
                    "programStages": [{"id": TR_STAGE}],
                    "organisationUnits": [{"id": OU_A}, {"id": OU_B}],
                },
            ],  # fmt: skip
            "programStages": [
                {
                    "id": EV_STAGE,
                    "name": "Assessment",
                    "program": {"id": EV_PROGRAM},
                    "programStageDataElements": [{"dataElement": {"id": EV_DE}}],
                },
                {
                    "id": TR_STAGE,
                    "name": "ANC visit",
                    "program": {"id": TR_PROGRAM},
                    "programStageDataElements": [{"dataElement": {"id": EV_DE}}],
                },
            ],  # fmt: skip
        },
        user={
            "id": "xE7jOejl9FI",
            "username": "admin",
            "authorities": ["F_DATAVALUE_ADD"],
            "organisationUnits": [{"id": ROOT}],
        },  # fmt: skip
    )
    return md


@pytest.fixture
def dhis2():
    server = Dhis2(metadata(), USER).start()
    yield server
    server.stop()


def session(kind: str = "basic") -> requests.Session:
    s = requests.Session()
    if kind == "basic":
        s.auth = (USER["username"], USER["password"])
    else:
        s.headers["Authorization"] = f"ApiToken {USER['token']}"
    return s


def post_values(dhis2, values, path="/api/dataValueSets", params=None, **top):
    return session().post(f"{dhis2.url}{path}", json={**top, "dataValues": values}, params=params, timeout=10)


def read_values(dhis2, period="202405", org_unit=OU_A):
    r = session().get(
        f"{dhis2.url}/api/dataValueSets", params={"dataSet": DS, "period": period, "orgUnit": org_unit}, timeout=10
    )
    assert r.status_code == 200, r.text
    return {(v["dataElement"], v["categoryOptionCombo"]): v["value"] for v in r.json()["dataValues"]}


# -- auth ---------------------------------------------------------------------------------------------


def test_basic_auth_and_api_token_both_work_and_wrong_ones_get_dhis2s_401(dhis2):
    for kind in ("basic", "token"):
        r = session(kind).get(f"{dhis2.url}/api/me", timeout=10)
        assert r.status_code == 200 and r.json()["username"] == "admin", (kind, r.text)
    wrong = requests.get(f"{dhis2.url}/api/me", auth=("admin", "nope"), timeout=10)
    assert wrong.status_code == 401
    assert wrong.json() == {"httpStatus": "Unauthorized", "httpStatusCode": 401, "status": "ERROR",
                            "message": "Unauthorized"}  # fmt: skip
    token = requests.get(f"{dhis2.url}/api/me", headers={"Authorization": "ApiToken d2pat_wrong"}, timeout=10)
    assert token.status_code == 401 and token.json()["message"] == "The API token does not exists."
    assert requests.get(f"{dhis2.url}/api/me", timeout=10).status_code == 401
    assert dhis2.stats()["unauthorized"] == 3


# -- aggregate -------------------------------------------------------------------------------------------


def test_a_clean_import_is_200_ok_wrapped_and_a_repost_upserts_by_natural_key(dhis2):
    values = [{"dataElement": DE_1, "value": "12"}, {"dataElement": DE_2, "categoryOptionCombo": COC_F, "value": "3"}]
    r = post_values(dhis2, values, dataSet=DS, period="202405", orgUnit=OU_A)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["httpStatus"], body["status"], body["message"]) == ("OK", "OK", "Import was successful.")
    summary = body["response"]
    assert summary["responseType"] == "ImportSummary" and summary["status"] == "SUCCESS"
    assert summary["importCount"] == {"imported": 2, "updated": 0, "ignored": 0, "deleted": 0}
    assert summary["conflicts"] == [] and summary["rejectedIndexes"] == []
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "12", (DE_2, COC_F): "3"}

    again = post_values(
        dhis2, [{"dataElement": DE_1, "value": "13"}, values[1]], dataSet=DS, period="202405", orgUnit=OU_A
    )
    # 2.40 counts an unchanged value as updated; the other one changed
    assert again.json()["response"]["importCount"] == {"imported": 0, "updated": 2, "ignored": 0, "deleted": 0}
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "13", (DE_2, COC_F): "3"}
    assert dhis2.stats()["data_values"] == 2

    dhis2.configure(version="2.41.1")
    same = post_values(dhis2, [{"dataElement": DE_1, "value": "13"}], period="202405", orgUnit=OU_A)
    assert same.json()["response"]["importCount"] == {"imported": 0, "updated": 0, "ignored": 1, "deleted": 0}


def test_api_below_38_answers_the_bare_import_summary(dhis2):
    r = post_values(dhis2, [{"dataElement": DE_1, "value": "1"}, {"dataElement": "nOpEnOpE123", "value": "1"}],
                    path="/api/37/dataValueSets", period="202405", orgUnit=OU_A)  # fmt: skip
    assert r.status_code == 409
    body = r.json()
    assert "httpStatus" not in body and "response" not in body
    assert body["responseType"] == "ImportSummary" and body["status"] == "WARNING"
    assert body["importCount"] == {"imported": 1, "updated": 0, "ignored": 1, "deleted": 0}
    assert "rejectedIndexes" not in body  # the field came with 2.39
    dhis2.configure(version="2.37.9")  # an unversioned path takes the server's own version
    bare = post_values(dhis2, [{"dataElement": DE_1, "value": "2"}], period="202405", orgUnit=OU_A)
    assert bare.status_code == 200 and bare.json()["status"] == "SUCCESS" and "httpStatus" not in bare.json()
    wrapped = post_values(dhis2, [{"dataElement": DE_1, "value": "3"}], path="/api/40/dataValueSets",
                          period="202405", orgUnit=OU_A)  # fmt: skip
    assert wrapped.json()["httpStatusCode"] == 200 and wrapped.json()["response"]["importCount"]["updated"] == 1


def test_conflicts_name_each_rejected_value_with_dhis2s_code_and_message_and_the_rest_is_saved(dhis2):
    values = [
        {"dataElement": DE_1, "period": "202405", "orgUnit": OU_A, "value": "5"},
        {"dataElement": "unknownDE01", "period": "202405", "orgUnit": OU_A, "value": "1"},
        {"dataElement": DE_2, "period": "202405", "orgUnit": "unknownOU01", "value": "1"},
        {"dataElement": DE_2, "period": "202405", "orgUnit": OU_A, "categoryOptionCombo": "unknownCOC1", "value": "1"},
        {"dataElement": DE_2, "period": "2024-05", "orgUnit": OU_A, "value": "1"},
        {"dataElement": DE_2, "period": "202405", "orgUnit": OUTSIDE, "value": "1"},
        {"dataElement": "unknownDE01", "period": "202406", "orgUnit": OU_B, "value": "2"},
    ]
    r = post_values(dhis2, values)
    assert r.status_code == 409
    body = r.json()
    assert (body["httpStatus"], body["status"]) == ("Conflict", "WARNING")
    assert body["message"] == "One more conflicts encountered, please check import summary."
    summary = body["response"]
    assert summary["importCount"] == {"imported": 1, "updated": 0, "ignored": 6, "deleted": 0}
    assert summary["rejectedIndexes"] == [1, 2, 3, 4, 5, 6]
    by_code = {c["errorCode"]: c for c in summary["conflicts"]}
    assert by_code["E7610"] == {"object": "unknownDE01", "objects": {"dataElement": "unknownDE01"},
                                "value": "Data element not found or not accessible: `unknownDE01`",
                                "errorCode": "E7610", "property": "dataElement", "indexes": [1, 6]}  # fmt: skip
    assert by_code["E7612"]["value"] == "Organisation unit not found or not accessible: `unknownOU01`"
    assert (
        by_code["E7613"]["value"] == "Category option combo not found or not accessible for writing data: `unknownCOC1`"
    )
    assert by_code["E7611"]["value"] == "Period not valid: `2024-05`" and by_code["E7611"]["indexes"] == [4]
    assert by_code["E7617"]["value"] == f"Organisation unit: `{OUTSIDE}` not in hierarchy of current user: `admin`"
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "5"}


def test_an_unknown_data_set_refuses_the_whole_set_with_status_error(dhis2):
    r = post_values(dhis2, [{"dataElement": DE_1, "value": "5"}], dataSet="unknownDS01", period="202405", orgUnit=OU_A)
    assert r.status_code == 409
    assert r.json()["status"] == "ERROR" and r.json()["message"] == "An error occurred, please check import summary."
    summary = r.json()["response"]
    assert summary["importCount"]["ignored"] == 1 and summary["importCount"]["imported"] == 0
    assert summary["conflicts"][0]["value"] == "Data set not found or not accessible: `unknownDS01`"
    assert dhis2.stats()["data_values"] == 0


def test_id_schemes_from_query_or_payload_payload_wins_and_dry_run_stores_nothing(dhis2):
    values = [{"dataElement": "DE_ONE", "categoryOptionCombo": "FEMALE", "value": "4"}]
    r = post_values(dhis2, values, params={"idScheme": "code"}, period="202405", orgUnit="OU_A")
    assert r.status_code == 200, r.text
    assert read_values(dhis2) == {(DE_1, COC_F): "4"}
    # the payload's orgUnitIdScheme=uid beats the query's code: OU_A is then not a UID
    r = post_values(dhis2, values, params={"idScheme": "code"}, period="202405", orgUnit="OU_A", orgUnitIdScheme="uid")
    assert r.status_code == 409 and r.json()["response"]["conflicts"][0]["errorCode"] == "E7603"
    by_name = post_values(dhis2, [{"dataElement": "Referrals", "value": "9"}], params={"dataElementIdScheme": "name"},
                          period="202405", orgUnit=OU_B)  # fmt: skip
    assert by_name.status_code == 200 and read_values(dhis2, org_unit=OU_B) == {(DE_2, DEFAULT_COC): "9"}
    dry = post_values(
        dhis2, [{"dataElement": DE_1, "value": "99"}], params={"dryRun": "true"}, period="202406", orgUnit=OU_A
    )
    assert dry.json()["response"]["importCount"]["imported"] == 1 and dry.json()["response"]["importOptions"]["dryRun"]
    assert read_values(dhis2, period="202406") == {}


def test_delete_strategy_removes_values_and_get_needs_its_parameters(dhis2):
    post_values(
        dhis2, [{"dataElement": DE_1, "value": "1"}, {"dataElement": DE_2, "value": "2"}], period="202405", orgUnit=OU_A
    )
    r = post_values(dhis2, [{"dataElement": DE_1}], params={"importStrategy": "DELETE"}, period="202405", orgUnit=OU_A)
    assert r.json()["response"]["importCount"] == {"imported": 0, "updated": 0, "ignored": 0, "deleted": 1}
    assert read_values(dhis2) == {(DE_2, DEFAULT_COC): "2"}
    get = session().get(f"{dhis2.url}/api/dataValueSets", params={"dataSet": DS, "orgUnit": OU_A}, timeout=10)
    assert get.status_code == 409 and get.json()["errorCode"] == "E2002"
    get = session().get(f"{dhis2.url}/api/dataValueSets", params={"period": "202405", "orgUnit": OU_A}, timeout=10)
    assert get.status_code == 409 and get.json()["errorCode"] == "E2001"
    ranged = session().get(f"{dhis2.url}/api/dataValueSets", timeout=10,
                           params={"dataSet": DS, "startDate": "2024-01-01", "endDate": "2024-12-31", "orgUnit": ROOT, "children": "true"})  # fmt: skip
    assert [(v["dataElement"], v["value"]) for v in ranged.json()["dataValues"]] == [(DE_2, "2")]


def test_a_value_changed_behind_the_pipelines_back_is_what_dhis2_then_answers(dhis2):
    post_values(dhis2, [{"dataElement": DE_1, "value": "7"}], period="202405", orgUnit=OU_A)
    dhis2.set_value(DE_1, "202405", OU_A, "70")
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "70"}
    dhis2.set_value(DE_1, "202405", OU_A, None)
    assert read_values(dhis2) == {}


def test_wrong_content_type_is_415_and_bad_json_400(dhis2):
    url = f"{dhis2.url}/api/dataValueSets"
    assert session().post(url, data="x", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 415
    bad = session().post(url, data="{", headers={"Content-Type": "application/json"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["status"] == "ERROR"


# -- tracker -------------------------------------------------------------------------------------------


def post_tracker(dhis2, payload, **params):
    query = {"async": "false", "importStrategy": "CREATE_AND_UPDATE", "atomicMode": "OBJECT", **params}
    return session("token").post(f"{dhis2.url}/api/tracker", json=payload, params=query, timeout=10)


def event(uid, ou=OU_A, value="37.5", **extra):
    return {"event": uid, "program": EV_PROGRAM, "programStage": EV_STAGE, "orgUnit": ou, "occurredAt": "2024-05-02",
            "status": "COMPLETED", "dataValues": [{"dataElement": EV_DE, "value": value}], **extra}  # fmt: skip


def test_events_are_created_then_updated_by_their_client_uid_never_duplicated(dhis2):
    r = post_tracker(dhis2, {"events": [event("ZwwuwNp6gVd"), event("Bq1Xv9f0aZ2")]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "OK" and body["validationReport"]["errorReports"] == []
    assert body["stats"] == {"created": 2, "updated": 0, "deleted": 0, "ignored": 0, "total": 2}
    reports = body["bundleReport"]["typeReportMap"]["EVENT"]["objectReports"]
    assert [o["uid"] for o in reports] == ["ZwwuwNp6gVd", "Bq1Xv9f0aZ2"]
    again = post_tracker(dhis2, {"events": [event("ZwwuwNp6gVd", value="38.0")]})
    assert again.json()["stats"]["updated"] == 1 and dhis2.stats()["events"] == 2
    assert dhis2.tracker.get("EVENT", "ZwwuwNp6gVd")["dataValues"] == [{"dataElement": EV_DE, "value": "38.0"}]
    create = post_tracker(dhis2, {"events": [event("ZwwuwNp6gVd")]}, importStrategy="CREATE")
    assert create.status_code == 409
    assert create.json()["validationReport"]["errorReports"] == [
        {"message": "Event: `ZwwuwNp6gVd`, already exists.", "errorCode": "E1030", "trackerType": "EVENT",
         "uid": "ZwwuwNp6gVd"}]  # fmt: skip


def test_the_validation_report_names_each_bad_object_and_object_mode_commits_the_valid_ones(dhis2):
    payload = {"events": [event("Good0000001"), event("1badUid"), event("UnknownOu01", ou="nowhere0001"),
                          event("WrongDe0001") | {"dataValues": [{"dataElement": "nOtAdE00001", "value": "1"}]},
                          event("OutOfScope1", ou=OUTSIDE)]}  # fmt: skip
    r = post_tracker(dhis2, payload)
    assert r.status_code == 409
    body = r.json()
    assert body["status"] == "ERROR"
    assert body["stats"] == {"created": 1, "updated": 0, "deleted": 0, "ignored": 4, "total": 5}
    errors = {(e["uid"], e["errorCode"]): e["message"] for e in body["validationReport"]["errorReports"]}
    assert errors == {
        ("1badUid", "E1048"): "Object: `1badUid`, uid: `1badUid`, has an invalid uid format.",
        ("UnknownOu01", "E1011"): "Could not find OrganisationUnit: `nowhere0001`, linked to Event.",
        ("WrongDe0001", "E1304"): "DataElement `nOtAdE00001` is not a valid data element",
        ("OutOfScope1", "E1000"): f"User: `admin`, has no write access to OrganisationUnit: `{OUTSIDE}`.",
    }
    assert dhis2.stats()["events"] == 1
    # atomicMode=ALL: one bad object and nothing is committed
    all_mode = post_tracker(dhis2, {"events": [event("Good0000002"), event("1badUid")]}, atomicMode="ALL")
    assert all_mode.status_code == 409 and all_mode.json()["stats"]["ignored"] == 2 and dhis2.stats()["events"] == 1


def test_nested_tracked_entity_enrollment_and_event_and_a_bad_parent_refuses_its_children(dhis2):
    te = {"trackedEntity": "Kj6vYde4LHh", "trackedEntityType": TET, "orgUnit": OU_A,
          "attributes": [{"attribute": ATTR, "value": "Jane"}],
          "enrollments": [{"enrollment": "MNWZ6hnuhSw", "program": TR_PROGRAM, "orgUnit": OU_A,
                           "enrolledAt": "2024-05-01", "occurredAt": "2024-05-01", "status": "ACTIVE",
                           "events": [{"event": "EvAnc000001", "programStage": TR_STAGE, "orgUnit": OU_A,
                                       "occurredAt": "2024-05-02", "status": "COMPLETED",
                                       "dataValues": [{"dataElement": EV_DE, "value": "5.7"}]}]}]}  # fmt: skip
    r = post_tracker(dhis2, {"trackedEntities": [te]})
    assert r.status_code == 200, r.text
    assert r.json()["stats"]["created"] == 3
    assert set(r.json()["bundleReport"]["typeReportMap"]) == {"TRACKED_ENTITY", "ENROLLMENT", "EVENT"}
    bad = {**te, "trackedEntity": "Kj6vYde4LH2", "trackedEntityType": "Q9GufDoplCL",
           "enrollments": [{**te["enrollments"][0], "enrollment": "MNWZ6hnuhS2",
                            "events": [{**te["enrollments"][0]["events"][0], "event": "EvAnc000002"}]}]}  # fmt: skip
    r = post_tracker(dhis2, {"trackedEntities": [bad]})
    errors = [(e["trackerType"], e["errorCode"], e["message"]) for e in r.json()["validationReport"]["errorReports"]]
    assert errors[0] == ("TRACKED_ENTITY", "E1005", "Could not find TrackedEntityType: `Q9GufDoplCL`.")
    assert [e[:2] for e in errors[1:]] == [("ENROLLMENT", "E5000"), ("EVENT", "E5000")]
    # an event of a tracker program needs its enrollment
    lone = post_tracker(
        dhis2, {"events": [{**te["enrollments"][0]["events"][0], "event": "EvAnc000003", "program": TR_PROGRAM}]}
    )
    assert lone.json()["validationReport"]["errorReports"][0]["errorCode"] == "E1033"


def test_async_is_the_default_and_its_report_is_polled(dhis2):
    r = session().post(f"{dhis2.url}/api/tracker", json={"events": [event("AsyncEv0001")]}, timeout=10)
    assert r.status_code == 200 and r.json()["message"] == "Tracker job added"
    job = r.json()["response"]["id"]
    assert session().get(f"{dhis2.url}/api/tracker/jobs/{job}", timeout=10).json()[-1]["completed"] is True
    report = session().get(f"{dhis2.url}/api/tracker/jobs/{job}/report", timeout=10).json()
    assert report["stats"]["created"] == 1


def test_validate_mode_commits_nothing(dhis2):
    r = post_tracker(dhis2, {"events": [event("Validate001")]}, importMode="VALIDATE")
    assert r.status_code == 200 and dhis2.stats()["events"] == 0


@pytest.mark.parametrize("version", ["2.40.3", "2.41.0"])
def test_events_are_read_in_pages_in_the_shape_of_the_version(dhis2, version):
    dhis2.configure(version=version)
    post_tracker(dhis2, {"events": [event(f"PagedEv{i:04d}", ou=OU_A if i % 2 else OU_B) for i in range(7)]})
    seen, page = [], 1
    while True:
        r = session().get(f"{dhis2.url}/api/tracker/events", timeout=10, params={
            "program": EV_PROGRAM, "orgUnits" if version >= "2.41" else "orgUnit": ROOT,
            "orgUnitMode" if version >= "2.41" else "ouMode": "DESCENDANTS", "page": page, "pageSize": 3,
            "totalPages": "true"})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        if version >= "2.41":
            items, total = body["events"], body["pager"]["total"]
            assert "instances" not in body
        else:
            items, total = body["instances"], body["total"]
            assert "pager" not in body
        seen += [e["event"] for e in items]
        if len(items) < 3:
            break
        page += 1
    assert sorted(seen) == [f"PagedEv{i:04d}" for i in range(7)] and total == 7
    only_a = session().get(f"{dhis2.url}/api/tracker/events", timeout=10,
                           params={"program": EV_PROGRAM, "orgUnit": OU_A, "ouMode": "SELECTED", "paging": "false"})  # fmt: skip
    items = only_a.json().get("events", only_a.json().get("instances"))
    assert len(items) == 3 and dhis2.tracker.count("EVENT", program=EV_PROGRAM) == 7


# -- metadata --------------------------------------------------------------------------------------------


def test_metadata_lists_filter_by_id_and_give_access_paths_and_404(dhis2):
    r = session().get(f"{dhis2.url}/api/dataElements", timeout=10,
                      params={"filter": f"id:in:[{DE_1},nOpE0000000]", "fields": "id,code,name", "paging": "false"})  # fmt: skip
    assert r.json() == {"dataElements": [{"id": DE_1, "code": "DE_ONE", "name": "ANC 1st visit"}]}
    ds = session().get(f"{dhis2.url}/api/dataSets/{DS}", params={"fields": "id,access[data[write]]"}, timeout=10)
    assert ds.json() == {"id": DS, "access": {"read": True, "write": True, "data": {"read": True, "write": True}}}
    ou = session().get(
        f"{dhis2.url}/api/organisationUnits", params={"filter": f"id:eq:{OU_A}", "fields": "id,path"}, timeout=10
    )
    assert ou.json()["organisationUnits"] == [{"id": OU_A, "path": f"/{ROOT}/{OU_A}"}] and "pager" in ou.json()
    missing = session().get(f"{dhis2.url}/api/programs/nOpE0000000", timeout=10)
    assert missing.status_code == 404 and missing.json()["message"] == "Program with id nOpE0000000 could not be found."
    me = session().get(f"{dhis2.url}/api/me", timeout=10).json()
    assert me["organisationUnits"] == [{"id": ROOT}] and "F_DATAVALUE_ADD" in me["authorities"]
    codes = session().get(f"{dhis2.url}/api/system/id", params={"limit": 3}, timeout=10).json()["codes"]
    assert len(codes) == 3 and all(len(c) == 11 and c[0].isalpha() and c.isalnum() for c in codes)
    assert session().get(f"{dhis2.url}/api/system/info", timeout=10).json()["version"] == "2.40.3"
    assert dhis2.stats()["data_requests"] == 0


def test_an_async_data_value_import_is_a_job_whose_summary_is_fetched_later(dhis2):
    r = post_values(
        dhis2, [{"dataElement": DE_1, "value": "4"}], params={"async": "true"}, period="202405", orgUnit=OU_A
    )
    assert r.status_code == 200 and r.json()["message"] == "Initiated DATAVALUE_IMPORT"
    endpoint = r.json()["response"]["relativeNotifierEndpoint"]
    job = r.json()["response"]["id"]
    assert endpoint == f"/api/system/tasks/DATAVALUE_IMPORT/{job}"
    assert session().get(f"{dhis2.url}{endpoint}", timeout=10).json()[-1]["completed"] is True
    summary = session().get(f"{dhis2.url}/api/system/taskSummaries/DATAVALUE_IMPORT/{job}", timeout=10).json()
    assert summary["responseType"] == "ImportSummary" and summary["importCount"]["imported"] == 1
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "4"}


@pytest.mark.parametrize(
    ("version", "units_param", "mode_param"), [("2.40.3", "orgUnit", "ouMode"), ("2.41.1", "orgUnits", "orgUnitMode")]
)
def test_each_version_reads_only_its_own_parameter_names(dhis2, version, units_param, mode_param):
    dhis2.configure(version=version)
    post_tracker(dhis2, {"events": [event("VersionEv01", ou=OU_A), event("VersionEv02", ou=OU_B)]})
    url = f"{dhis2.url}/api/tracker/events"

    def listed(params):
        body = session().get(url, params={"program": EV_PROGRAM, **params}, timeout=10).json()
        return sorted(e["event"] for e in body.get("events", body.get("instances", [])))

    assert listed({units_param: OU_A, mode_param: "SELECTED"}) == ["VersionEv01"]
    other_mode = "orgUnitMode" if mode_param == "ouMode" else "ouMode"
    if version < "2.41":  # orgUnits did not exist yet: ignored, so the user's accessible org units are read
        assert listed({"orgUnits": OU_A}) == ["VersionEv01", "VersionEv02"]
    assert listed({units_param: ROOT, other_mode: "DESCENDANTS"}) == []  # the other name is ignored: SELECTED root
    te = session().get(f"{dhis2.url}/api/tracker/trackedEntities", params={"program": TR_PROGRAM}, timeout=10)
    assert te.status_code == 400 and te.json()["message"] == "At least one organisation unit must be specified"
    dhis2.configure(version="2.42.0")
    assert (
        session()
        .get(f"{dhis2.url}/api/tracker/trackedEntities", params={"program": TR_PROGRAM}, timeout=10)
        .status_code
        == 200
    )
    assert listed({"orgUnit": OU_A}) == ["VersionEv01", "VersionEv02"]  # orgUnit is gone in 2.42


def test_complete_date_registers_completeness_and_skip_existing_check_breaks_on_an_existing_value(dhis2):
    r = post_values(dhis2, [{"dataElement": DE_1, "value": "1"}], dataSet=DS, period="202405", orgUnit=OU_A,
                    completeDate="2024-06-02")  # fmt: skip
    assert r.json()["response"]["dataSetComplete"] == "2024-06-02"
    assert dhis2.values.completeness == {(DS, "202405", OU_A, DEFAULT_COC): "2024-06-02"}
    fresh = post_values(dhis2, [{"dataElement": DE_2, "value": "2"}], params={"skipExistingCheck": "true"},
                        period="202405", orgUnit=OU_A)  # fmt: skip
    assert fresh.status_code == 200  # nothing there yet: inserted
    again = post_values(dhis2, [{"dataElement": DE_2, "value": "3"}, {"dataElement": DE_1, "value": "9"}],
                        params={"skipExistingCheck": "true"}, period="202405", orgUnit=OU_A)  # fmt: skip
    assert again.status_code == 409
    summary = again.json()["response"]
    assert (
        summary["status"] == "ERROR"
        and summary["description"] == "The import process failed: Failed to flush BatchHandler"
    )
    assert summary["importCount"] == {"imported": 0, "updated": 0, "ignored": 2, "deleted": 0}
    assert read_values(dhis2) == {(DE_1, DEFAULT_COC): "1", (DE_2, DEFAULT_COC): "2"}
