"""A person's enrollment and tracked entity are the first report's: later reports add events and leave
them alone (no later date, no reopened COMPLETED enrollment, no moved org unit); and dates go to DHIS2
in the instance's time zone, where the reconciliation counts them in the same month."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from cht_bridge.aggregate.reconcile_tracker import reconcile_tracker
from cht_bridge.destinations.dhis2 import uids
from cht_bridge.destinations.dhis2.tracker import enrollments_of
from cht_bridge.sync.resources import Endpoint, open_resources
from tests.integration import test_dhis2_tracker as tracker_tests
from tests.integration.aggregate_setup import facilities, org_uid
from tests.integration.test_dhis2_tracker import (
    CREDENTIALS,
    PROGRAM,
    TR_PROGRAM,
    event_config,
    facility_of,
    reports,
    run,
    stand_in,
    tracker_config,
    write_pipeline,
)

pytestmark = pytest.mark.integration
seeded = tracker_tests.seeded  # the tracker tests' fixture (the ledger is the shared `store`)

AUTH = (CREDENTIALS["username"], CREDENTIALS["password"])
NAIROBI = ZoneInfo("Africa/Nairobi")


def test_a_later_report_adds_its_event_and_leaves_the_enrollment_and_the_tracked_entity_as_they_were(
    cht, seeded, store, tmp_path
):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        pipeline = write_pipeline(tmp_path, tracker_config(f"enrol_{uuid.uuid4().hex[:8]}", cht.db, table))
        pregnancies = reports(docs, "pregnancy")
        women = {d["fields"]["patient_uuid"] for d in pregnancies.values()}
        run(pipeline, cht, dhis2, store.url)
        first = min(pregnancies.values(), key=lambda d: d["reported_date"])
        woman = first["fields"]["patient_uuid"]
        enrollment_uid, te_uid = uids.enrollment_uid(TR_PROGRAM, woman), uids.tracked_entity_uid(woman)
        enrollment, te = dhis2.tracker.get("ENROLLMENT", enrollment_uid), dhis2.tracker.get("TRACKED_ENTITY", te_uid)
        assert enrollment["status"] == "ACTIVE"
        assert store.counts(enrollments_of(pipeline.name)) == {"delivered": len(women)}
        # The programme closes her enrollment at DHIS2.
        completed = {k: v for k, v in enrollment.items() if k not in ("createdAt", "updatedAt", "deleted")}
        answer = requests.post(f"{dhis2.url}/api/tracker", json={"enrollments": [{**completed, "status": "COMPLETED"}]},
                               params={"async": "false", "importStrategy": "CREATE_AND_UPDATE"}, auth=AUTH, timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text
        # Months later a report of her comes from another health centre.
        other = next(p["_id"] for p in facilities(docs) if p["_id"] != facility_of(first, docs))
        people = [d for d in docs if d.get("type") == "person" and d.get("parent")]
        chw = next(d for d in people if _health_centre(d, docs) == other)
        later = copy.deepcopy(first)
        later.pop("_rev")
        later["_id"] = f"later-{uuid.uuid4().hex[:8]}"
        later["contact"] = {"_id": chw["_id"], "parent": chw["parent"]}  # a person of the other health centre
        later["reported_date"] = max(d["reported_date"] for d in docs if "reported_date" in d) + 40 * 86_400_000
        cht.put(later)
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.sent == 1 and summary.failed == summary.dead_lettered == 0, summary.as_dict()
        event = dhis2.tracker.get("EVENT", uids.event_uid(TR_PROGRAM, later["_id"]))
        assert event["enrollment"] == enrollment_uid and event["orgUnit"] == org_uid(facility_of(later, docs))
        now = dhis2.tracker.get("ENROLLMENT", enrollment_uid)
        assert now["status"] == "COMPLETED", "a COMPLETED enrollment is not reopened"
        assert (now["enrolledAt"], now["occurredAt"]) == (enrollment["enrolledAt"], enrollment["occurredAt"])
        assert now["orgUnit"] == enrollment["orgUnit"]
        assert (
            dhis2.tracker.get("TRACKED_ENTITY", te_uid)["orgUnit"] == te["orgUnit"] == org_uid(facility_of(first, docs))
        )
        assert dhis2.stats()["enrollments"] == dhis2.stats()["tracked_entities"] == len(women)
    finally:
        dhis2.stop()


def _health_centre(person: dict, docs: list[dict]) -> str | None:
    by_id = {d["_id"]: d for d in docs}
    place = by_id.get((person.get("parent") or {}).get("_id"))
    while place is not None and place.get("type") != "health_center":
        place = by_id.get((place.get("parent") or {}).get("_id"))
    return place["_id"] if place else None


def test_dates_are_the_instances_local_time_and_the_reconciliation_counts_them_in_that_month(
    cht, seeded, store, tmp_path
):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        config = event_config(f"zone_{uuid.uuid4().hex[:8]}", cht.db, table, time_zone="Africa/Nairobi")
        pipeline = write_pipeline(tmp_path, config)
        # 01:30 on 1 February in Nairobi: still 31 January in UTC.
        late = copy.deepcopy(next(iter(reports(docs, "assessment").values())))
        late.pop("_rev")
        late["_id"] = f"late-{uuid.uuid4().hex[:8]}"
        late["reported_date"] = int(datetime(2026, 1, 31, 22, 30, tzinfo=UTC).timestamp() * 1000)
        cht.put(late)
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.failed == summary.dead_lettered == 0
        event = dhis2.tracker.get("EVENT", uids.event_uid(PROGRAM, late["_id"]))
        assert event["occurredAt"] == "2026-02-01T01:30:00.000"
        february = [d for d in reports(docs, "assessment").values()] + [late]
        february = [d for d in february
                    if datetime.fromtimestamp(d["reported_date"] / 1000, NAIROBI).strftime("%Y%m") == "202602"]  # fmt: skip
        r = open_resources(
            pipeline, cht=Endpoint(cht.url, cht.user), destination=Endpoint(dhis2.url, AUTH), state_url=store.url
        )
        try:
            result = reconcile_tracker(pipeline, client=r.client, destination=r.destination, mapper=r.mapper,
                                       start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 3, 1, tzinfo=UTC),
                                       folder=tmp_path / "reports")  # fmt: skip
        finally:
            r.close()
        assert result.cht_events == result.dhis2_events == len(february), result.as_dict()
        assert result.differences == 0
    finally:
        dhis2.stop()


def test_an_enrollment_only_pipeline_sends_a_persons_enrollment_once(cht, seeded, store, tmp_path):
    """Without a program stage a report is its person's enrollment: a later report of an enrolled
    person has nothing to send, and is delivered as that enrollment."""
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        config = tracker_config(f"enrol_only_{uuid.uuid4().hex[:8]}", cht.db, table)
        for key in ("program_stage", "data_values"):
            config["destination"]["dhis2"].pop(key)
        pipeline = write_pipeline(tmp_path, config)
        run(pipeline, cht, dhis2, store.url)
        first = min(reports(docs, "pregnancy").values(), key=lambda d: d["reported_date"])
        enrollment = dhis2.tracker.get("ENROLLMENT", uids.enrollment_uid(TR_PROGRAM, first["fields"]["patient_uuid"]))
        writes = dhis2.stats()["data_requests"]
        later = copy.deepcopy(first)
        later.pop("_rev")
        later["_id"] = f"later-{uuid.uuid4().hex[:8]}"
        later["reported_date"] += 90 * 86_400_000
        cht.put(later)
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.sent == 1 and dhis2.stats()["data_requests"] == writes, "nothing left to send"
        assert store.ledger(pipeline.name, later["_id"])["destination_id"] == enrollment["enrollment"]
        assert dhis2.tracker.get("ENROLLMENT", enrollment["enrollment"])["enrolledAt"] == enrollment["enrolledAt"]
    finally:
        dhis2.stop()
