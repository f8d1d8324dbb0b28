"""The RapidPro stand-in keeps the API v2 contract of ``destinations.md`` §3: token auth, the URN
upsert, flow start limits and validation errors (DRF bodies), runs with cursor paging and
``after``, and 429 with ``Retry-After`` past a request budget."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from standins.rapidpro import RapidProStandIn

TOKEN = "contract-token"
AUTH = {"Authorization": f"Token {TOKEN}"}
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def rp():
    with RapidProStandIn(TOKEN, fields=("cht_id", "village")) as server:
        server.flow = server.add_flow("Self quarantine")
        server.group = server.add_group("CHT clients")
        yield server


def post(rp, endpoint: str, body, params=None, headers=AUTH) -> requests.Response:
    return requests.post(f"{rp.url}/api/v2/{endpoint}.json", json=body, params=params, headers=headers, timeout=10)


def get(rp, endpoint: str, params=None, url=None) -> requests.Response:
    return requests.get(url or f"{rp.url}/api/v2/{endpoint}.json", params=params, headers=AUTH, timeout=10)


def test_token_auth(rp):
    for headers in ({}, {"Authorization": "Token wrong"}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = post(rp, "contacts", {"name": "X"}, headers=headers)
        assert answer.status_code == 403 and "detail" in answer.json()
    assert get(rp, "runs").status_code == 200


def test_urn_upsert_creates_then_updates_and_only_present_fields_change(rp):
    urn = {"urn": "tel:+254712345678"}
    created = post(rp, "contacts", {"name": "Achieng", "language": "swa", "fields": {"cht_id": "p-1"}}, urn)
    assert created.status_code == 201
    body = created.json()
    assert body["urns"] == ["tel:+254712345678"] and body["fields"] == {"cht_id": "p-1"} and body["uuid"]
    updated = post(rp, "contacts", {"fields": {"village": "Ahero"}, "groups": ["cht CLIENTS"]}, urn)
    assert updated.status_code == 200 and updated.json()["uuid"] == body["uuid"]
    assert updated.json()["name"] == "Achieng" and updated.json()["language"] == "swa"
    assert updated.json()["fields"] == {"cht_id": "p-1", "village": "Ahero"}
    assert updated.json()["groups"] == [{"uuid": rp.group, "name": "CHT clients"}]
    assert len(rp.contacts) == 1
    listed = get(rp, "contacts", {"urn": "tel:+254712345678"}).json()
    assert [c["uuid"] for c in listed["results"]] == [body["uuid"]]
    by_uuid = post(rp, "contacts", {"name": "Achieng O."}, {"uuid": body["uuid"]})
    assert by_uuid.status_code == 200 and by_uuid.json()["name"] == "Achieng O."
    assert post(rp, "contacts", {"name": "X"}, {"uuid": "no-such"}).status_code == 404


def test_contact_validation_errors_are_drf_field_errors(rp):
    post(rp, "contacts", {"name": "A", "urns": ["tel:+254712345678"]})
    taken = post(rp, "contacts", {"name": "B", "urns": ["tel:+254712345678"]})
    assert taken.status_code == 400 and taken.json() == {"urns": {"0": ["URN is in use by another contact."]}}
    assert post(rp, "contacts", {"urns": ["tel:0712"]}).json()["urns"]["0"][0].startswith("Invalid URN")
    assert post(rp, "contacts", {"fields": {"nope": "x"}}).json() == {"fields": ["Invalid contact field key: nope"]}
    assert "groups" in post(rp, "contacts", {"groups": ["Nobody"]}).json()
    with_urns = post(rp, "contacts", {"urns": ["tel:+254700111222"]}, {"urn": "tel:+254700111333"})
    assert with_urns.status_code == 400 and "urns" in with_urns.json()
    too_many = post(rp, "contacts", {"urns": [f"tel:+2547001{i:05d}" for i in range(101)]})
    assert too_many.status_code == 400 and "100" in too_many.json()["urns"][0]


def test_flow_start_limits_and_validation(rp):
    ok = post(rp, "flow_starts", {"flow": rp.flow, "urns": ["tel:+254712345678"], "params": {"a": 1}})
    assert ok.status_code == 201
    start = ok.json()
    assert start["status"] == "pending" and start["params"] == {"a": 1} and start["flow"]["uuid"] == rp.flow
    assert len(start["contacts"]) == 1  # a contact was made for the new URN
    again = post(rp, "flow_starts", {"flow": rp.flow, "urns": ["tel:+254712345678"], "params": {"a": 1}})
    assert again.status_code == 201 and again.json()["uuid"] != start["uuid"]  # no idempotency key
    cases = [
        ({"urns": ["tel:+254712345678"]}, "flow"),
        ({"flow": "no-such-flow", "urns": ["tel:+254712345678"]}, "flow"),
        ({"flow": rp.flow}, "non_field_errors"),
        ({"flow": rp.flow, "urns": [f"tel:+2547001{i:05d}" for i in range(101)]}, "urns"),
        ({"flow": rp.flow, "contacts": ["no-such-contact"]}, "contacts"),
        ({"flow": rp.flow, "urns": ["tel:0712"]}, "urns"),
        ({"flow": rp.flow, "urns": ["tel:+254712345678"], "params": {"x": "y" * 10_001}}, "params"),
        ({"flow": rp.flow, "urns": ["tel:+254712345678"], "params": ["not", "an", "object"]}, "params"),
    ]
    for body, key in cases:
        answer = post(rp, "flow_starts", body)
        assert answer.status_code == 400 and key in answer.json(), (body, answer.json())
    hundred = post(rp, "flow_starts", {"flow": rp.flow, "urns": [f"tel:+2547001{i:05d}" for i in range(100)]})
    assert hundred.status_code == 201
    assert len(rp.starts) == 3
    listed = get(rp, "flow_starts", {"uuid": start["uuid"]}).json()["results"]
    assert [s["uuid"] for s in listed] == [start["uuid"]] and "urns" not in listed[0]


def test_runs_page_by_cursor_newest_first_and_filter_by_flow_and_after(rp):
    other = rp.add_flow("Other")
    for i in range(5):
        rp.add_run(rp.flow, f"tel:+2547120000{i:02d}", {"symptoms": "no"}, modified_on=T0 + timedelta(minutes=i))
    rp.add_run(other, "tel:+254712000099", {"symptoms": "yes"}, modified_on=T0)
    rp.state.page_size = 2
    seen, url, params = [], None, {"flow": rp.flow}
    while True:
        page = get(rp, "runs", params, url).json()
        assert set(page) == {"next", "previous", "results"}
        seen += page["results"]
        if page["next"] is None:
            break
        url, params = page["next"], None
    assert [r["modified_on"] for r in seen] == sorted((r["modified_on"] for r in seen), reverse=True)
    assert len(seen) == 5 and {r["flow"]["uuid"] for r in seen} == {rp.flow}
    run = seen[0]
    assert set(run["values"]["symptoms"]) == {"name", "value", "category", "node", "time"}
    assert run["contact"]["urn"].startswith("tel:+254") and run["exit_type"] == "completed"
    after = (T0 + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    newer = get(rp, "runs", {"flow": rp.flow, "after": after, "reverse": "true"}).json()["results"]
    assert [r["modified_on"] for r in newer] == [after, (T0 + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    assert get(rp, "runs", {"flow": rp.flow, "contact": "x"}).status_code == 400
    assert get(rp, "runs", {"flow": "no-such-flow"}).json()["results"] == []


def test_a_cursor_keeps_its_place_when_runs_are_added_between_pages(rp):
    for i in range(4):
        rp.add_run(rp.flow, f"tel:+2547120000{i:02d}", {}, modified_on=T0 + timedelta(minutes=i))
    rp.state.page_size = 2
    first = get(rp, "runs", {"flow": rp.flow, "reverse": "true"}).json()
    rp.add_run(rp.flow, "tel:+254712000050", {}, modified_on=T0 - timedelta(minutes=5))  # before the cursor
    second = get(rp, "runs", url=first["next"]).json()
    assert [r["modified_on"] for r in first["results"] + second["results"]] == sorted(
        (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for i in range(4)
    )


def test_429_with_retry_after_past_the_request_budget(rp):
    rp.configure(rate=3)
    statuses = [get(rp, "runs").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    throttled = get(rp, "runs")
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json()["detail"].startswith("Request was throttled.")
    assert get(rp, "contacts").status_code == 200  # another throttle scope (v2.contacts)
    rp.throttle_next(1, retry_after=2)
    injected = get(rp, "contacts")
    assert injected.status_code == 429 and injected.headers["Retry-After"] == "2"


def test_a_stalled_start_is_stored_before_it_is_answered(rp):
    rp.configure(stall_after_start=1.5)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{rp.url}/api/v2/flow_starts.json", json={"flow": rp.flow, "urns": ["tel:+254712345678"]},
            headers=AUTH, timeout=0.5,
        )  # fmt: skip
    assert len(rp.starts) == 1 and time.monotonic() - started < 1.5
