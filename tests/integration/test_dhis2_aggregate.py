"""DHIS2 aggregate pipelines against the real local CHT (pouchdb-server) and the DHIS2 stand-in:
values equal counts computed here from the seeded documents, for every period type; re-runs
change nothing; an edit or a delete changes its period once; conflicts are recorded with DHIS2's
message while the other values are delivered, in both import-summary shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cht_bridge.aggregate import ledger
from cht_bridge.aggregate.periods import period_of
from cht_bridge.aggregate.post import value_key
from cht_bridge.aggregate.run import opened, run_aggregate
from cht_bridge.destinations import registry
from cht_bridge.errors import PreflightError
from tests.integration.aggregate_setup import (
    DE_ASSESS,
    DE_PREG,
    endpoints,
    expected,
    facilities,
    held,
    load,
    org_uid,
    pipeline_file,
    stand_in,
    write_table,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def dhis2_kind():
    added = "dhis2" not in registry.kinds()
    if added:
        registry.register("dhis2", object)
    yield
    if added:
        registry.unregister("dhis2")


@pytest.fixture(scope="module")
def seeded(couch, tmp_path_factory):
    """One seeded CHT database for the read-only checks of this module."""
    import uuid

    import requests

    from standins.couchdb import create_user, set_security
    from tests.conftest import ChtDb

    db = f"medic_{uuid.uuid4().hex[:10]}"
    requests.put(f"{couch.url}/{db}", auth=couch.admin_auth, timeout=30).raise_for_status()
    user, password = f"integration_{db}", uuid.uuid4().hex
    create_user(couch.url, couch.admin_auth, user, password, ["mm-online"])
    set_security(couch.url, couch.admin_auth, db, member_names=[user])
    cht = ChtDb(couch.url, db, couch.admin_auth, (user, password))
    cht.seed(700, seed=11)
    return cht


def _run(path, cht, dhis2, state_url, **kw):
    pipeline = load(path)
    with opened(pipeline, state_url=state_url, **endpoints(cht, dhis2)) as (client, poster, store):
        return run_aggregate(pipeline, client=client, poster=poster, store=store, **kw), store


@pytest.mark.parametrize("period_type", ["daily", "weekly", "monthly", "quarterly", "yearly"])
def test_values_equal_counts_made_independently_per_period_org_unit_and_data_element(seeded, tmp_path, period_type):
    docs = seeded.all_docs()
    places = facilities(docs)
    left_out = places[-1]  # its reports are counted and listed, not silently dropped
    table = write_table(tmp_path / "ou.csv", places[:-1])
    dhis2 = stand_in(places[:-1])
    try:
        summary, _ = _run(
            pipeline_file(tmp_path, table, period_type, db=seeded.db), seeded, dhis2, f"sqlite:///{tmp_path}/s.db"
        )
        want = expected(
            docs, lambda day: period_of(day, period_type), {p["_id"]: org_uid(p["_id"]) for p in places[:-1]}
        )
        assert held(dhis2) == want
        assert summary.conflicted == 0 and summary.failed == 0 and summary.delivered == len(want)
        assert summary.unplaced > 0 and len(summary.unplaced_ids) > 0
        left_reports = {
            d["_id"] for d in docs
            if d.get("form") in ("pregnancy", "assessment") and (d["contact"].get("parent") or {}).get("_id") == left_out["_id"]
        }  # fmt: skip
        assert left_reports and set(summary.unplaced_ids) <= left_reports | _deeper(docs, left_out["_id"])
    finally:
        dhis2.stop()


def _deeper(docs, facility):
    """Reports whose submitter sits deeper under the facility (a household head who is a CHW)."""
    out = set()
    for d in docs:
        node = (d.get("contact") or {}).get("parent")
        while node:
            if node["_id"] == facility:
                out.add(d["_id"])
            node = node.get("parent")
    return out


def test_a_rerun_changes_nothing_and_an_edit_or_a_delete_changes_its_period_once(cht, tmp_path):
    cht.seed(500, seed=5)
    docs = cht.all_docs()
    places = facilities(docs)
    org_units = {p["_id"]: org_uid(p["_id"]) for p in places}
    table = write_table(tmp_path / "ou.csv", places)
    dhis2 = stand_in(places)
    state = f"sqlite:///{tmp_path}/s.db"
    path = pipeline_file(tmp_path, table, db=cht.db)
    monthly = lambda day: period_of(day, "monthly")  # noqa: E731
    try:
        first, _ = _run(path, cht, dhis2, state)
        assert held(dhis2) == expected(docs, monthly, org_units)
        writes = dhis2.stats()["data_requests"]
        second, _ = _run(path, cht, dhis2, state)
        assert second.periods == [] and second.values == 0
        assert dhis2.stats()["data_requests"] == writes, "a run with no change posts nothing"
        # Re-running a month (Params start/end) posts it again and changes nothing there.
        before = held(dhis2)
        again, _ = _run(
            path, cht, dhis2, state, window=(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
        )
        assert again.periods == ["202603"] and again.values > 0 and held(dhis2) == before

        # An edit moves a pregnancy to an assessment; a delete removes another pregnancy.
        pregnancies = [d for d in docs if d.get("form") == "pregnancy" and "referral" not in d["fields"]]
        edited, deleted = pregnancies[0], pregnancies[1]
        edited_doc = cht.get(edited["_id"])
        edited_doc["form"] = "assessment"
        edited_doc["fields"]["referral"] = "yes"
        deleted_doc = cht.get(deleted["_id"])
        cht.put(edited_doc, {"_id": deleted_doc["_id"], "_rev": deleted_doc["_rev"], "_deleted": True})
        now_docs = cht.all_docs()
        want = expected(now_docs, monthly, org_units)
        third, store = _run(path, cht, dhis2, state)
        assert set(third.periods) == {_month(edited), _month(deleted)}
        got = held(dhis2)
        assert got == want, "the edited and deleted reports' periods were recomputed, not added to"
        ou = org_units[_facility(docs, edited)]
        assert got.get((_month(edited), ou, DE_ASSESS)) == want[(_month(edited), ou, DE_ASSESS)]
        # A value that became absent (no pregnancy left in a cell) was deleted at DHIS2, and the ledger says so.
        gone = set(before) - set(want)
        for key in gone:
            row = store.ledger(path.stem, value_key(*key, None, None))
            assert row is not None and row["status"] == "deleted", key
        fourth, _ = _run(path, cht, dhis2, state)
        assert fourth.values == 0 and held(dhis2) == want
        assert ledger.pending_periods(store, path.stem) == []
    finally:
        dhis2.stop()


def _month(doc) -> str:
    from zoneinfo import ZoneInfo

    return (
        datetime.fromtimestamp(doc["reported_date"] / 1000, UTC).astimezone(ZoneInfo("Africa/Nairobi")).strftime("%Y%m")
    )


def _facility(docs, report) -> str:
    by_id = {d["_id"]: d for d in docs}
    node = report["contact"].get("parent")
    while node and by_id.get(node["_id"], {}).get("type") != "health_center":
        node = node.get("parent")
    return node["_id"]


@pytest.mark.parametrize("version", ["2.37.9", "2.40.3"])
def test_a_conflicted_value_is_recorded_with_dhis2s_message_and_the_others_are_delivered(cht, tmp_path, version):
    """API 37 answers a bare import summary, 40 a wrapped one; both are read value by value.

    The org units come from a field of each health centre (``org_unit.field``): the pre-flight
    cannot know them, so the unknown one reaches DHIS2, which refuses its values (E7612).
    """
    cht.seed(700, seed=11)
    docs = cht.all_docs()
    places = facilities(docs)
    for place in places:
        cht.put({**cht.get(place["_id"]), "dhis2_org_unit": org_uid(place["_id"])})
    want = expected(docs, lambda day: period_of(day, "monthly"), {p["_id"]: org_uid(p["_id"]) for p in places})
    with_values = [p for p in places if any(k[1] == org_uid(p["_id"]) for k in want)]
    assert len(with_values) >= 2
    refused = with_values[-1]
    dhis2 = stand_in([p for p in places if p is not refused], version=version)  # DHIS2 lacks its org unit
    state = f"sqlite:///{tmp_path}/s.db"
    path = pipeline_file(tmp_path, None, db=cht.db, field="dhis2_org_unit")
    try:
        summary, store = _run(path, cht, dhis2, state)
        refused_ou = org_uid(refused["_id"])
        refused_keys = [k for k in want if k[1] == refused_ou]
        assert refused_keys
        assert held(dhis2) == {k: v for k, v in want.items() if k[1] != refused_ou}
        assert summary.conflicted == len(refused_keys) and summary.delivered == len(want) - len(refused_keys)
        for period, ou, de in refused_keys:
            row = store.ledger(path.stem, value_key(period, ou, de, None, None))
            assert row["status"] == "dead" and row["response_status"] == 409
            assert refused_ou in row["last_error"] and "E7612" in row["last_error"], row["last_error"]
        delivered = store.ledger(path.stem, value_key(*next(k for k in want if k[1] != refused_ou)[:3], None, None))
        assert delivered["status"] == "delivered"
        assert summary.import_counts["ignored"] == len(refused_keys), "ignored values are not counted as delivered"
        assert ledger.pending_periods(store, path.stem) == [], "a refused value is answered: its period is done"
    finally:
        dhis2.stop()


def test_the_preflight_names_what_dhis2_lacks_and_nothing_is_sent(seeded, tmp_path):
    docs = seeded.all_docs()
    places = facilities(docs)
    table = write_table(tmp_path / "ou.csv", places)
    dhis2 = stand_in(places[1:])  # one org unit of the table is missing
    dhis2.metadata.remove("dataElements", DE_PREG)
    path = pipeline_file(tmp_path, table, db=seeded.db)
    try:
        with pytest.raises(PreflightError) as err:
            _run(path, seeded, dhis2, f"sqlite:///{tmp_path}/s.db")
        message = str(err.value)
        assert f"data element `{DE_PREG}` (destination.dhis2.data_values.0.data_element)" in message
        assert f"org unit `{org_uid(places[0]['_id'])}` (destination.dhis2.org_unit.table)" in message
        assert dhis2.stats()["data_requests"] == 0
    finally:
        dhis2.stop()


def test_a_lost_answer_leaves_its_periods_pending_and_the_next_run_posts_them(seeded, tmp_path):
    docs = seeded.all_docs()
    places = facilities(docs)
    table = write_table(tmp_path / "ou.csv", places)
    dhis2 = stand_in(places)
    dhis2.configure(delay=2.0)  # every data write answers after the bridge stopped waiting
    state = f"sqlite:///{tmp_path}/s.db"
    # breaker_after above the number of requests: lost answers here, not an outage (see the breaker test)
    top = {"delivery": {"retries": 0, "breaker_after": 1000}, "destination": {"timeout": 0.5}}
    path = pipeline_file(tmp_path, table, db=seeded.db, top=top)
    try:
        first, store = _run(path, seeded, dhis2, state)
        assert first.delivered == 0 and first.failed == first.values > 0
        assert sorted(ledger.pending_periods(store, path.stem)) == sorted(first.periods)
        assert store.counts(path.stem) == {"failed": first.values}
        dhis2.configure(delay=0.0)
        second, store = _run(path, seeded, dhis2, state)
        assert second.read == 0, "no new change: the periods come from the pending rows"
        assert sorted(second.periods) == sorted(first.periods) and second.delivered == second.values
        want = expected(docs, lambda day: period_of(day, "monthly"), {p["_id"]: org_uid(p["_id"]) for p in places})
        assert held(dhis2) == want and ledger.pending_periods(store, path.stem) == []
    finally:
        dhis2.stop()


def test_a_dry_run_asks_dhis2_with_dryrun_and_records_nothing(seeded, tmp_path):
    docs = seeded.all_docs()
    places = facilities(docs)
    dhis2 = stand_in(places)
    state = f"sqlite:///{tmp_path}/s.db"
    path = pipeline_file(tmp_path, write_table(tmp_path / "ou.csv", places), db=seeded.db, dry_run=True)
    try:
        summary, store = _run(path, seeded, dhis2, state)
        assert summary.dry_run and summary.values > 0 and summary.import_counts["imported"] == summary.values
        assert held(dhis2) == {}, "dryRun=true: DHIS2 stored nothing"
        assert store.counts(path.stem) == {}
        # No state at all: no report or period rows, and the checkpoint did not move, so a real run
        # later reads the same changes and posts the same periods.
        assert store.counts(ledger.reports_of(path.stem)) == {} and store.counts(ledger.periods_of(path.stem)) == {}
        assert store.checkpoint(path.stem) is None
        path.write_text(path.read_text().replace("dry_run: true", "dry_run: false"))
        real, _ = _run(path, seeded, dhis2, state)
        assert not real.dry_run and real.periods == summary.periods and real.delivered == summary.values
        assert held(dhis2) != {}
    finally:
        dhis2.stop()


def test_dhis2_down_opens_the_breaker_the_run_stops_early_and_its_periods_stay_pending(seeded, tmp_path):
    from cht_bridge.errors import CircuitOpenError

    docs = seeded.all_docs()
    places = facilities(docs)
    dhis2 = stand_in(places)
    dhis2.configure(delay=2.0)  # every data write answers after the bridge stopped waiting: down, as far as it sees
    state = f"sqlite:///{tmp_path}/s.db"
    top = {"delivery": {"retries": 1, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "breaker_after": 3},
           "destination": {"timeout": 0.3}}  # fmt: skip
    path = pipeline_file(tmp_path, write_table(tmp_path / "ou.csv", places), db=seeded.db, top=top)
    pipeline = load(path)
    try:
        with opened(pipeline, state_url=state, **endpoints(seeded, dhis2)) as (client, poster, store):
            with pytest.raises(CircuitOpenError, match="failed 3 times in a row"):
                run_aggregate(pipeline, client=client, poster=poster, store=store)
            pending = ledger.pending_periods(store, pipeline.name)
            assert len(pending) > 2, "several periods, one request each: most are never sent"
            assert store.counts(pipeline.name) == {}, "an outage is not a failure of the values"
        assert dhis2.stats()["data_requests"] == 3, "three tries, then nothing more"
        dhis2.configure(delay=0.0)
        again, store = _run(path, seeded, dhis2, state)
        assert sorted(again.periods) == sorted(pending) and again.delivered == again.values
        want = expected(docs, lambda day: period_of(day, "monthly"), {p["_id"]: org_uid(p["_id"]) for p in places})
        assert held(dhis2) == want and ledger.pending_periods(store, pipeline.name) == []
    finally:
        dhis2.stop()


def test_a_slash_in_a_name_survives_the_ledger_key_a_delete_and_a_reconciliation(cht, tmp_path):
    """Under id_scheme NAME the data element and the org units are sent by name; "Pregnancies / registered"
    holds a '/', which the ledger's key keeps apart from its other parts."""
    from cht_bridge.aggregate.reconcile import reconcile

    cht.seed(300, seed=3)
    docs = cht.all_docs()
    places = facilities(docs)
    dhis2 = stand_in(places)
    name = "Pregnancies / registered"
    dhis2.metadata.add("dataElements", [{"id": "CHTslash001", "name": name}])
    table = tmp_path / "names.csv"
    table.write_text("place_id,org_unit\n" + "".join(f"{p['_id']},{p['name']} / HC\n" for p in places))
    for p in places:  # the stand-in's org units renamed to hold a '/' too
        dhis2.metadata.add("organisationUnits", [{"id": org_uid(p["_id"]), "name": f"{p['name']} / HC",
                                                  "parent": {"id": "ImspTQPwCqd"}}])  # fmt: skip
    values = [{"name": "pregnancies", "aggregate": "count", "filter": "doc.form === 'pregnancy'", "data_element": name}]
    top = {"destination": {"dhis2": {"kind": "aggregate", "id_scheme": "NAME", "period": "monthly",
                                     "time_zone": "Africa/Nairobi", "data_values": values,
                                     "org_unit": {"lineage": "submitter", "level": "health_center",
                                                  "table": str(table)}}}}  # fmt: skip
    path = pipeline_file(tmp_path, table, db=cht.db, top=top)
    state = f"sqlite:///{tmp_path}/s.db"
    try:
        first, store = _run(path, cht, dhis2, state)
        assert first.delivered == first.values > 0 and first.conflicted == 0
        cells: dict[tuple[str, str], list[dict]] = {}
        for d in docs:
            if d.get("type") == "data_record" and d.get("form") == "pregnancy":
                cells.setdefault((_month(d), _facility(docs, d)), []).append(d)
        (period, facility), doomed = min(cells.items(), key=lambda kv: len(kv[1]))
        ou = org_uid(facility)
        assert held(dhis2)[(period, ou, "CHTslash001")] == len(doomed)
        for d in doomed:  # the cell's every report deleted: its value must go at DHIS2
            current = cht.get(d["_id"])
            cht.put({"_id": current["_id"], "_rev": current["_rev"], "_deleted": True})
        second, store = _run(path, cht, dhis2, state)
        assert period in second.periods and second.deleted == 1 and second.conflicted == 0
        assert (period, ou, "CHTslash001") not in held(dhis2)
        row = store.ledger(path.stem, value_key(period, f"{next(p['name'] for p in places if p['_id'] == facility)} / HC",
                                                name, None, None))  # fmt: skip
        assert row["status"] == "deleted"
        pipeline = load(path)
        with opened(pipeline, state_url=state, **endpoints(cht, dhis2)) as (client, poster, store):
            result = reconcile(pipeline, client=client, poster=poster, store=store, folder=tmp_path / "r",
                               start=datetime(2025, 1, 1, tzinfo=UTC), end=datetime(2027, 1, 1, tzinfo=UTC))  # fmt: skip
        assert result.cht_values > 0
    finally:
        dhis2.stop()


@pytest.mark.parametrize(
    ("rule", "lineage"),
    [({"lineage": "patient"}, "patient"), ({"level": 2}, "submitter"), ({"lineage": "patient", "level": 2}, "patient")],
)
def test_the_org_unit_from_the_patients_lineage_or_a_depth(seeded, tmp_path, rule, lineage):
    """``level: 2`` is the second place from the top (district hospital, then health centre)."""
    docs = seeded.all_docs()
    places = facilities(docs)
    dhis2 = stand_in(places)
    path = pipeline_file(tmp_path, write_table(tmp_path / "ou.csv", places), db=seeded.db, org_unit=rule)
    try:
        summary, _ = _run(path, seeded, dhis2, f"sqlite:///{tmp_path}/s.db")
        org_units = {p["_id"]: org_uid(p["_id"]) for p in places}
        want = expected(docs, lambda day: period_of(day, "monthly"), org_units, lineage=lineage)
        assert held(dhis2) == want and summary.unplaced == 0
    finally:
        dhis2.stop()
