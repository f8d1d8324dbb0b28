"""A tracker pipeline's reconciliation finds what changed at DHIS2 behind the pipeline's back (an
event deleted there, an event typed in there) and a report never sent, per event and per month and
org unit; with repost the missing events are sent again (a UID deleted at DHIS2 stays refused)."""

from __future__ import annotations

import copy
import csv
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cht_bridge.aggregate.reconcile_tracker import reconcile_tracker
from cht_bridge.destinations.dhis2 import uids
from cht_bridge.sync.resources import Endpoint, open_resources
from tests.integration.aggregate_setup import facilities, org_uid
from tests.integration.test_dhis2_tracker import (
    CREDENTIALS,
    PROGRAM,
    STAGE,
    event_config,
    facility_of,
    reports,
    run,
    stand_in,
    write_pipeline,
)

pytestmark = pytest.mark.integration

START, END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("version", ["2.40.3", "2.41.1"])
def test_the_reconciliation_finds_events_changed_at_dhis2_and_reports_never_sent(cht, store, tmp_path, version):
    from tests.integration.aggregate_setup import write_table

    cht.seed(400, seed=12)
    docs = cht.all_docs()
    table = write_table(tmp_path / "org_units.csv", facilities(docs))
    dhis2 = stand_in(facilities(docs), version=version)
    auth = (CREDENTIALS["username"], CREDENTIALS["password"])
    try:
        pipeline = write_pipeline(tmp_path, event_config(f"reconcile_{uuid.uuid4().hex[:8]}", cht.db, table))
        run(pipeline, cht, dhis2, store.url)
        expected = reports(docs, "assessment")
        deleted_doc, deleted = next(iter(expected.items()))
        gone = uids.event_uid(PROGRAM, deleted_doc)
        typed_in = {"event": "TypedAtDhis", "program": PROGRAM, "programStage": STAGE, "status": "COMPLETED",
                    "orgUnit": org_uid(facility_of(deleted, docs)), "occurredAt": "2026-03-04T10:00:00.000"}  # fmt: skip
        tracker = f"{dhis2.url}/api/tracker"
        for payload, strategy in (
            ({"events": [{"event": gone}]}, "DELETE"),
            ({"events": [typed_in]}, "CREATE_AND_UPDATE"),
        ):
            answer = requests.post(tracker, json=payload, auth=auth, timeout=10,
                                   params={"async": "false", "importStrategy": strategy})  # fmt: skip
            assert answer.status_code == 200, answer.text
        never_sent = copy.deepcopy(next(d for d in expected.values() if d["_id"] != deleted_doc))
        never_sent.pop("_rev")
        never_sent["_id"] = f"never-sent-{uuid.uuid4().hex[:8]}"
        cht.put(never_sent)

        r = open_resources(
            pipeline, cht=Endpoint(cht.url, cht.user), destination=Endpoint(dhis2.url, auth), state_url=store.url
        )
        try:
            result = reconcile_tracker(pipeline, client=r.client, destination=r.destination, mapper=r.mapper,
                                       start=START, end=END, folder=tmp_path / "reports")  # fmt: skip
        finally:
            r.close()
        assert result.cht_events == len(expected) + 1 and result.dhis2_events == len(expected) - 1 + 1
        assert (result.missing_in_dhis2, result.not_in_cht) == (2, 1)
        assert result.different_cells >= 2 and result.unplaced_reports == 0
        with open(result.csv, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        by_kind = {(row["difference"], row["event"]): row for row in rows}
        assert by_kind[("missing_in_dhis2", gone)]["report"] == deleted_doc
        assert ("missing_in_dhis2", uids.event_uid(PROGRAM, never_sent["_id"])) in by_kind
        assert by_kind[("not_in_cht", "TypedAtDhis")]["period"] == "202603"
        assert "TypedAtDhis" in Path(result.html).read_text(encoding="utf-8")

        r = open_resources(
            pipeline, cht=Endpoint(cht.url, cht.user), destination=Endpoint(dhis2.url, auth), state_url=store.url
        )
        try:
            again = reconcile_tracker(pipeline, client=r.client, destination=r.destination, mapper=r.mapper,
                                      start=START, end=END, folder=tmp_path / "reports", repost=True,
                                      store=r.store)  # fmt: skip
        finally:
            r.close()
        # The never-sent report is sent now; the UID deleted at DHIS2 cannot be used again (E1082).
        assert (again.reposted, again.repost_refused) == (1, 1)
        assert dhis2.tracker.get("EVENT", uids.event_uid(PROGRAM, never_sent["_id"])) is not None
        # Both answers are in the reports' ledger rows, as any delivery's: the refusal a dead letter with why.
        sent = store.ledger(pipeline.name, never_sent["_id"])
        assert sent["status"] == "delivered" and sent["destination_id"] == uids.event_uid(PROGRAM, never_sent["_id"])
        refused = store.ledger(pipeline.name, deleted_doc)
        assert refused["status"] == "dead" and f"E1082 EVENT {gone}" in refused["last_error"], refused
    finally:
        dhis2.stop()


def test_the_reconcile_dag_takes_a_tracker_pipeline(cht, airflow_db, monkeypatch, tmp_path):
    """``cht_bridge_reconcile`` lists tracker pipelines too and runs this comparison for them."""
    import json

    import yaml

    from tests.integration.aggregate_setup import write_table
    from tests.integration.dagrun import run_dag

    cht.seed(400, seed=12)
    docs = cht.all_docs()
    dhis2 = stand_in(facilities(docs))
    try:
        folder = tmp_path / "pipelines"
        folder.mkdir()
        config = event_config(
            f"reconcile_dag_{uuid.uuid4().hex[:8]}", cht.db, write_table(tmp_path / "ou.csv", facilities(docs))
        )
        (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config))
        monkeypatch.setenv("AIRFLOW_CONN_CHT_TRACKER", cht.connection())
        monkeypatch.setenv("AIRFLOW_CONN_DHIS2_TRACKER", json.dumps({"conn_type": "http", "host": dhis2.url,
                           "login": CREDENTIALS["username"], "password": CREDENTIALS["password"]}))  # fmt: skip
        state, summary = run_dag(monkeypatch, folder, config["name"])
        expected = reports(docs, "assessment")
        assert state == "success" and dhis2.stats()["events"] == len(expected)
        doc_id = next(iter(expected))
        requests.post(f"{dhis2.url}/api/tracker", json={"events": [{"event": uids.event_uid(PROGRAM, doc_id)}]},
                      params={"async": "false", "importStrategy": "DELETE"}, timeout=10,
                      auth=(CREDENTIALS["username"], CREDENTIALS["password"])).raise_for_status()  # fmt: skip
        conf = {"pipeline": config["name"], "start": "2025-01-01", "end": "2027-01-01", "folder": str(tmp_path / "r")}
        state, totals = run_dag(monkeypatch, folder, "cht_bridge_reconcile", conf)
        assert state == "success", totals
        assert (totals["cht_events"], totals["dhis2_events"]) == (len(expected), len(expected) - 1)
        assert (totals["missing_in_dhis2"], totals["not_in_cht"], totals["different_cells"]) == (1, 0, 1)
        assert Path(totals["csv"]).exists() and Path(totals["html"]).exists()

        # The scheduled run (no pipeline Param) compares every DHIS2 pipeline, not the first by name.
        second = {**config, "name": "a_" + config["name"]}  # first by name
        (folder / f"{second['name']}.yaml").write_text(yaml.safe_dump(second))
        state, every = run_dag(
            monkeypatch, folder, "cht_bridge_reconcile", {k: v for k, v in conf.items() if k != "pipeline"}
        )
        assert state == "success", every
        assert sorted(every["pipelines"]) == sorted([config["name"], second["name"]])
        assert every["pipelines"][config["name"]]["missing_in_dhis2"] == 1
        assert every["differences"] == sum(t["differences"] for t in every["pipelines"].values())
    finally:
        dhis2.stop()
