"""``destination.type: rapidpro`` against the RapidPro stand-in, with real CHT documents (pouchdb-server),
the product's sync run and a SQLite state store: contacts upserted by URN, flow starts grouped to
the API's limits, 429s honoured, and the request budget kept across runs."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests

from cht_bridge.config import parse_pipeline
from cht_bridge.matching import normalise_phone
from standins.rapidpro import RapidProStandIn

pytestmark = pytest.mark.integration

TOKEN = "rp-test-token"
FLOW = "f5901b62-ba76-4003-9c62-72fdacc1b7b7"


def pipeline(name: str, db: str, relevant_to: str, mapping: dict[str, Any], **rapidpro: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht_test", "db": db},
        "relevant_to": relevant_to,
        "mapping": mapping,
        "destination": {
            "type": "rapidpro",
            "conn_id": "rapidpro_test",
            "auth": {"type": "header", "header": "Authorization", "prefix": "Token "},
            "rapidpro": rapidpro,
            "timeout": 10,
        },
        "batch_size": 100,
        "delivery": {"retries": 3, "backoff_seconds": 0.01, "max_backoff_seconds": 5},
    }


def flow_start_pipeline(name: str, db: str, **rapidpro: Any) -> dict[str, Any]:
    """cht.md §1.11 example 3: no symptoms at a contact-tracing follow-up → the self-quarantine flow."""
    relevant = "doc.type === 'data_record' && doc.form === 'covid_trace_follow_up' && doc.fields.trace.symptom === 'no'"
    mapping = {
        "flow": {"expr": f"'{FLOW}'"},
        "urns": {"expr": "[ 'tel:' + doc.fields.inputs.contact.phone ]"},
        "params.programme": {"expr": "'self_quarantine'"},
    }
    return pipeline(name, db, relevant, mapping, action="flow_start", **rapidpro)


def contact_pipeline(name: str, db: str, **rapidpro: Any) -> dict[str, Any]:
    mapping = {
        "phone": "doc.phone",
        "name": "doc.name",
        "language": {"expr": "'swa'"},
        "fields.cht_id": "doc._id",
        "groups": {"expr": "['CHT clients']"},
    }
    return pipeline(name, db, "doc.type === 'person' && !!doc.phone", mapping, action="contact", **rapidpro)


def phone(i: int) -> str:
    """A Kenyan mobile as CHT forms write it (national format, no country code)."""
    return f"07{(13572468 + i * 7919) % 100000000:08d}"


def follow_ups(n: int, start: int = 0, symptom: str = "no") -> list[dict[str, Any]]:
    return [
        {
            "_id": f"trace-{i:04d}",
            "type": "data_record",
            "form": "covid_trace_follow_up",
            "reported_date": 1_780_000_000_000 + i,
            "fields": {"trace": {"symptom": symptom}, "inputs": {"contact": {"phone": phone(i), "surname": "X"}}},
        }
        for i in range(start, start + n)
    ]


def open_run(raw: dict[str, Any], cht_url: str, cht_auth: tuple[str, str], rapidpro_url: str, token: str, state: str):
    """Client, destination, store and mapper as the sync task opens them, from plain values: the
    destination on a session that carries ``Authorization: Token …`` to RapidPro's origin only."""
    from cht_bridge.cht import CouchClient
    from cht_bridge.destinations import open_destination
    from cht_bridge.http.origin import OriginAuth, ScopedSession
    from cht_bridge.mapping import Mapper
    from cht_bridge.state import StateStore

    pipeline = parse_pipeline(raw, file=f"{raw['name']}.yaml")
    session = ScopedSession()
    session.auth = OriginAuth(rapidpro_url, headers={"Authorization": f"Token {token}"})
    destination = open_destination(session, rapidpro_url, pipeline.destination, pipeline.delivery)
    client = CouchClient(cht_url, pipeline.cht_db, cht_auth, conn_id="cht_test")
    return pipeline, client, destination, StateStore(state), Mapper.for_pipeline(pipeline)


def run(raw: dict[str, Any], cht, rapidpro: RapidProStandIn, state: str, token: str = TOKEN) -> dict[str, Any]:
    from cht_bridge.sync import run_pipeline

    pipeline, client, destination, store, mapper = open_run(raw, cht.url, cht.user, rapidpro.url, token, state)
    try:
        return run_pipeline(pipeline, client=client, destination=destination, store=store, mapper=mapper).as_dict()
    finally:
        mapper.close()
        destination.close()
        store.close()


@pytest.fixture
def rapidpro():
    server = RapidProStandIn(TOKEN, fields=("cht_id",)).start()
    server.add_flow("Self quarantine", FLOW)
    server.add_group("CHT clients")
    yield server
    server.stop()


@pytest.fixture
def state(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_250_documents_become_3_flow_starts_and_a_rerun_starts_nothing(cht, rapidpro, state):
    cht.put(*follow_ups(250), *follow_ups(5, start=900, symptom="yes"))
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)

    summary = run(raw, cht, rapidpro, state)

    starts = rapidpro.starts
    assert [len(s["urns"]) for s in starts] == [100, 100, 50]
    assert summary["sent"] == 250 and summary["failed"] == 0 and summary["waiting"] == 0
    urns = [u for s in starts for u in s["urns"]]
    assert sorted(urns) == sorted(f"tel:{normalise_phone(phone(i), 'KE')}" for i in range(250))
    assert all(s["params"]["programme"] == "self_quarantine" for s in starts)
    assert all(s["restart_participants"] is False and s["exclude_active"] is True for s in starts)
    assert len({s["params"]["cht_bridge_start"] for s in starts}) == 3  # each start carries our reference

    again = run(raw, cht, rapidpro, state)
    assert len(rapidpro.starts) == 3
    assert again["sent"] == 0 and again["unchanged"] == 0  # the checkpoint moved: nothing read again
    assert summary["budget_left"]["flow_starts"] == 1800 - 3

    # Even read again from the start (the checkpoint lost), the ledger starts nothing twice.
    from sqlalchemy import text

    from cht_bridge.state import StateStore

    store = StateStore(state)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM cht_bridge_checkpoint"))
    store.close()
    reread = run(raw, cht, rapidpro, state)
    assert reread["relevant"] == 250 and reread["unchanged"] == 250 and reread["sent"] == 0
    assert len(rapidpro.starts) == 3 and len([r for r in rapidpro.requests if r[0] == "POST"]) == 3


def test_documents_with_different_params_or_flows_never_share_a_start(cht, rapidpro, state):
    other = rapidpro.add_flow("Other")
    cht.put(*follow_ups(4))
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    raw["mapping"]["flow"] = {"expr": f"Number(doc._id.slice(-1)) % 2 ? '{other}' : '{FLOW}'"}
    raw["mapping"]["params.n"] = {"expr": "Number(doc._id.slice(-1)) < 2 ? 'low' : 'high'"}
    run(raw, cht, rapidpro, state)
    assert sorted((s["flow"]["uuid"] == other, s["params"]["n"]) for s in rapidpro.starts) == [
        (False, "high"), (False, "low"), (True, "high"), (True, "low"),
    ]  # fmt: skip


def test_a_start_refused_for_one_document_is_split_and_the_others_start(cht, rapidpro, state):
    docs = follow_ups(6)
    cht.put(*docs)
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    raw["mapping"]["contacts"] = {"expr": "doc._id === 'trace-0003' ? ['no-such-contact'] : []"}
    summary = run(raw, cht, rapidpro, state)
    assert summary["sent"] == 5 and summary["dead_lettered"] == 1
    started = {u for s in rapidpro.starts for u in s["urns"]}
    assert f"tel:{normalise_phone(phone(3), 'KE')}" not in started and len(started) == 5
    from cht_bridge.state import StateStore

    row = StateStore(state).ledger(raw["name"], "trace-0003")
    assert row["status"] == "dead" and "contacts: No such object" in row["last_error"]
    assert "0712" not in row["last_error"]


def test_urn_upsert_creates_then_updates_with_the_phone_as_the_matcher_reads_it(cht, rapidpro, state):
    people = [
        {"_id": "p-1", "type": "person", "name": "Achieng Otieno", "phone": "0712 345 678"},
        {"_id": "p-2", "type": "person", "name": "Wanjiru Kamau", "phone": "712345679.0"},  # a spreadsheet's
        {"_id": "p-3", "type": "person", "name": "Baraka Mwangi", "phone": "00254712345680"},
        {"_id": "p-4", "type": "person", "name": "No Phone", "phone": "0700000000"},  # a placeholder
    ]
    cht.put(*people)
    raw = contact_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)

    first = run(raw, cht, rapidpro, state)

    assert first["sent"] == 3 and first["dead_lettered"] == 1
    posts = [r for r in rapidpro.requests if r[0] == "POST"]
    assert [r[2] for r in posts] == [201, 201, 201]
    for person in people[:3]:
        urn = f"tel:{normalise_phone(person['phone'], 'KE')}"
        contact = rapidpro.contact_by_urn(urn)
        assert contact is not None, person["_id"]
        assert contact["name"] == person["name"] and contact["language"] == "swa"
        assert contact["fields"]["cht_id"] == person["_id"]
        assert [g["name"] for g in contact["groups"]] == ["CHT clients"]
    assert rapidpro.contact_by_urn("tel:+254712345678")["urns"] == ["tel:+254712345678"]

    renamed = cht.get("p-1")
    renamed["name"] = "Achieng Otieno-Ouma"
    cht.put(renamed)
    second = run(raw, cht, rapidpro, state)
    assert second["sent"] == 1
    assert [r[2] for r in rapidpro.requests if r[0] == "POST"][-1] == 200  # the same URN: updated
    assert len(rapidpro.contacts) == 3
    assert rapidpro.contact_by_urn("tel:+254712345678")["name"] == "Achieng Otieno-Ouma"


def test_a_429_with_retry_after_2_is_waited_out_and_then_succeeds(cht, rapidpro, state):
    cht.put(*follow_ups(3))
    rapidpro.throttle_next(1, retry_after=2)
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    started = time.monotonic()
    summary = run(raw, cht, rapidpro, state)
    posts = [r for r in rapidpro.requests if r[0] == "POST"]
    assert [r[2] for r in posts] == [429, 201]
    assert posts[1][3] - posts[0][3] >= 1.9  # Retry-After: 2 honoured
    assert time.monotonic() - started >= 2
    assert summary["sent"] == 3 and summary["request_retries"] == 1 and len(rapidpro.starts) == 1


def test_the_budget_keeps_the_request_rate_under_it_and_the_backlog_waits_for_later_runs(cht, rapidpro, state):
    """A workspace limit of 10 contact requests; the bridge's budget is 4 per hour: 10 documents
    take three runs (4 + 4 + 2), never a 429, and the waiting ones are not failures."""
    rapidpro.configure(rate=10)
    cht.put(*[{"_id": f"p-{i}", "type": "person", "name": f"Person {i}", "phone": phone(i)} for i in range(10)])
    raw = contact_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db, budget={"contacts": 4})

    runs = [run(raw, cht, rapidpro, state) for _ in range(3)]

    assert [r["sent"] for r in runs] == [4, 0, 0]  # the hour slides: nothing more within it
    assert [r["waiting"] for r in runs] == [6, 6, 6]
    assert all(r["failed"] == 0 and r["dead_lettered"] == 0 for r in runs)
    assert runs[0]["budget_left"] == {"contacts": 0, "flow_starts": 1800}
    assert len(rapidpro.contacts) == 4
    assert all(status != 429 for _, _, status, _ in rapidpro.requests)
    assert len(rapidpro.requests) == 4  # waiting documents cost no request
    from cht_bridge.state import StateStore

    store = StateStore(state)
    waiting = [store.ledger(raw["name"], f"p-{i}") for i in range(10)]
    assert sum(1 for w in waiting if w["status"] == "failed" and w["failures"] == 0) == 6
    assert all("waiting for the request budget" in w["last_error"] for w in waiting if w["status"] == "failed")

    # An hour later (the budget's minute buckets moved back by an hour): the next 4, then the last 2.
    with store.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE cht_bridge_request_budget SET minute = minute - 60"))
    later = run(raw, cht, rapidpro, state)
    assert later["sent"] == 4 and later["waiting"] == 2
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE cht_bridge_request_budget SET minute = minute - 60"))
    last = run(raw, cht, rapidpro, state)
    assert last["sent"] == 2 and last["waiting"] == 0
    assert len(rapidpro.contacts) == 10 and store.counts(raw["name"]) == {"delivered": 10}
    store.close()


def test_wrong_token_fails_fast_with_a_plain_message(cht, rapidpro, state):
    from cht_bridge.errors import AuthError

    cht.put(*follow_ups(2))
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    with pytest.raises(AuthError, match="RapidPro refused the credentials of Airflow connection 'rapidpro_test'"):
        run(raw, cht, rapidpro, state, token="wrong")
    assert rapidpro.starts == [] and len(rapidpro.requests) == 1
    assert requests.get(rapidpro.url + "/api/v2/runs.json", timeout=5).status_code == 403


def test_a_deleted_document_is_not_sent_and_says_why(cht, rapidpro, state):
    (saved,) = cht.put({"_id": "p-9", "type": "person", "name": "Gone Soon", "phone": phone(9)})
    raw = contact_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    raw["deletes"] = {"action": "send"}
    assert run(raw, cht, rapidpro, state)["sent"] == 1
    cht.put({"_id": "p-9", "_rev": saved["rev"], "_deleted": True})
    before = len(rapidpro.requests)
    summary = run(raw, cht, rapidpro, state)
    assert summary["dead_lettered"] == 1 and len(rapidpro.requests) == before
    from cht_bridge.state import StateStore

    row = StateStore(state).ledger(raw["name"], "p-9")
    assert row["status"] == "dead" and "send no deletes" in row["last_error"]


def test_a_start_whose_answer_never_came_is_looked_up_before_it_is_posted_again(cht, rapidpro, state):
    """RapidPro stores the start and answers too late for the client's timeout: the retry inside the
    run looks the start up by its reference first, finds it, and posts nothing more."""
    cht.put(*follow_ups(5))
    raw = flow_start_pipeline(f"rp_{uuid.uuid4().hex[:6]}", cht.db)
    raw["destination"]["timeout"] = 1
    rapidpro.configure(stall_after_start=2.5)
    summary = run(raw, cht, rapidpro, state)
    assert summary["sent"] == 5 and summary["failed"] == 0
    starts = rapidpro.starts
    assert len(starts) == 1 and len(starts[0]["urns"]) == 5
    deadline = time.monotonic() + 10
    while len(rapidpro.requests) < 2 and time.monotonic() < deadline:  # the stalled answer is logged when sent
        time.sleep(0.1)
    calls = [(m, p) for m, p, _, _ in rapidpro.requests]
    assert calls.count(("POST", "/api/v2/flow_starts.json")) == 1
    assert ("GET", "/api/v2/flow_starts.json") in calls
    from cht_bridge.state import StateStore

    store = StateStore(state)
    assert {store.ledger(raw["name"], f"trace-{i:04d}")["destination_id"] for i in range(5)} == {starts[0]["uuid"]}
    store.close()


def test_the_budget_and_the_recorded_starts_on_postgresql(postgres_url):
    """The same state on the PostgreSQL store a deployment with several workers shares."""
    from datetime import UTC, datetime

    from cht_bridge.hooks.state import sqlalchemy_url
    from cht_bridge.state import StateStore
    from cht_bridge.state.rapidpro import RapidProState

    store = StateStore(sqlalchemy_url(postgres_url))
    try:
        state, key, now = RapidProState(store), f"rp-{uuid.uuid4().hex[:6]}:contacts", datetime.now(UTC)
        assert [state.take(key, 3, 5, now) for _ in range(3)] == [3, 2, 0]
        state.give_back(key, 2, now)
        assert state.used(key, now) == 3
        state.intend("p-pg", "ref", [("k1", "d1")], now)
        state.started("p-pg", "ref", "uuid-1")
        assert state.intended("p-pg", ["k1"])["k1"][:2] == ("ref", "uuid-1")
    finally:
        store.close()


def test_a_contact_upsert_answered_2xx_without_the_contact_is_not_delivered(state):
    """A proxy's login page (200 text/html) in front of RapidPro: no contact, so not delivered; refused
    (the same request gets the same page) with a reason naming the Connection's host."""
    import json

    from cht_bridge.destinations import open_destination
    from cht_bridge.destinations.base import Delivery
    from cht_bridge.state import StateStore
    from standins.http_server import BackgroundHttpServer, StandInHandler

    class LoginPage(BackgroundHttpServer):
        def handler(self):
            class Handler(StandInHandler):
                def do_POST(self):
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    body = b"<html>Please log in</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            return Handler

    server = LoginPage().start()
    store = StateStore(state)
    try:
        pipeline = parse_pipeline(contact_pipeline("contacts_login", "medic"), file="contacts_login.yaml")
        destination = open_destination(requests.Session(), server.url, pipeline.destination, pipeline.delivery)
        destination.attach(store, pipeline.name)
        body = json.dumps({"phone": "0712345678", "name": "A", "fields": {"cht_id": "p1"}})
        (result,) = destination.send([Delivery("p1", body, "k1")])
        assert not result.ok and not result.retryable and result.destination_id is None, result
        assert "without the contact" in result.error and "Connection's host" in result.error
        assert "0712345678" not in result.error and "254712345678" not in result.error
    finally:
        store.close()
        server.stop()
