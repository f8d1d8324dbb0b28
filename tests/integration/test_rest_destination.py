"""``RestDestination`` against the real demo receiver: single and batch mode, idempotency keys,
per-item rejections, refused credentials and an unreachable destination."""

from __future__ import annotations

import json
import socket

import pytest
import requests

from cht_bridge.destinations.base import Delivery
from cht_bridge.destinations.rest import RestDestination
from cht_bridge.errors import AuthError, CircuitOpenError, TransportError
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.mapping.hashing import idempotency_key
from standins.receiver import Receiver, item_id
from tests.conftest import received

pytestmark = pytest.mark.integration

PATH = "/api/records"
CONN_ID = "receiver_test"
N = 20


def deliveries(n: int = N, reject: dict[int, str] | None = None) -> list[Delivery]:
    reject = reject or {}
    out = []
    for i in range(n):
        payload = {"resourceType": "Patient", "id": f"doc{i:02d}", "n": i}
        if i in reject:
            payload["reject"] = reject[i]
        body = json.dumps(payload, separators=(",", ":"))
        out.append(Delivery(f"doc{i:02d}", body, idempotency_key("pipe", f"doc{i:02d}", f"hash{i}")))
    return out


@pytest.fixture
def make_destination():
    """Build destinations like hooks/destination.py does (a basic-auth session), closing them afterwards."""
    made: list[RestDestination] = []

    def make(server: Receiver, *, password: str | None = None, url: str | None = None, **kwargs) -> RestDestination:
        session = requests.Session()
        creds = getattr(server, "credentials", None) or {"username": "bridge", "password": "x"}
        session.auth = (creds["username"], password if password is not None else creds["password"])
        dest = RestDestination(session, url or server.url, PATH, conn_id=CONN_ID, timeout=10.0, **kwargs)
        made.append(dest)
        return dest

    yield make
    for dest in made:
        dest.close()


@pytest.fixture
def rejecting_receiver(tmp_path):
    creds = {"username": "bridge", "password": "rejecting-receiver-pw"}
    with Receiver(tmp_path / "rejecting", credentials=creds, reject_field="reject") as server:
        server.credentials = creds
        yield server


MODES = [
    pytest.param({"mode": "single", "concurrency": 4}, N, id="single"),
    pytest.param({"mode": "batch", "batch_size": 7}, 3, id="batch"),
]


@pytest.mark.parametrize(("options", "n_requests"), MODES)
def test_every_item_arrives_once_in_order_with_its_idempotency_key(receiver, make_destination, options, n_requests):
    dest = make_destination(receiver, **options)
    items = deliveries()

    results = dest.send(items)

    assert [r.doc_id for r in results] == [d.doc_id for d in items]  # in order
    assert all(r.ok and r.error is None for r in results)
    assert dest.requests == n_requests
    stats = receiver.stats()
    assert stats["requests"] == n_requests and stats["items"] == N and stats["duplicates"] == 0

    lines = received(receiver)
    assert len(lines) == N
    by_key = {line["key"]: line for line in lines}
    assert len(by_key) == N  # each item once, under its own key
    for item, result in zip(items, results, strict=True):
        line = by_key[item.key]  # Idempotency-Key (single) / Idempotency-Keys slot (batch) = Delivery.key
        assert line["payload"] == json.loads(item.body)
        assert line["path"] == PATH and line["method"] == "POST"
        assert result.destination_id == line["id"] == item_id(item.key)
    if options["mode"] == "single":
        assert all(r.status == 201 for r in results)
    else:
        # a batch is written in array order: the file keeps the order of the deliveries
        assert [line["key"] for line in lines] == [d.key for d in items]


@pytest.mark.parametrize(("options", "n_requests"), MODES)
def test_resending_the_same_deliveries_creates_nothing_new(receiver, make_destination, options, n_requests):
    dest = make_destination(receiver, **options)
    items = deliveries()
    first = dest.send(items)
    again = dest.send(items)

    assert [r.doc_id for r in again] == [d.doc_id for d in items]
    assert all(r.ok for r in again)
    assert [r.destination_id for r in again] == [r.destination_id for r in first]  # the original ids
    stats = receiver.stats()
    assert stats["items"] == N and stats["duplicates"] == N
    assert stats["requests"] == 2 * n_requests
    assert len(received(receiver)) == N
    if options["mode"] == "single":
        assert all(r.status == 200 for r in again)  # the receiver's "seen before" answer


def test_put_method_and_an_empty_send(receiver, make_destination):
    dest = make_destination(receiver, mode="single", concurrency=2, method="PUT")
    assert dest.send([]) == []
    assert dest.requests == 0 and receiver.stats()["requests"] == 0
    (result,) = dest.send(deliveries(1))
    assert result.ok and result.status == 201
    assert received(receiver)[0]["method"] == "PUT"


# -- rejections -------------------------------------------------------------------------------------


def check_rejection(server: Receiver, results, items) -> None:
    assert [r.doc_id for r in results] == [d.doc_id for d in items]
    bad = results[5]
    assert bad.ok is False and bad.status == 422
    assert bad.error is not None and "rejected: implausible age" in bad.error
    assert bad.destination_id is None
    assert all(r.ok and r.error is None for i, r in enumerate(results) if i != 5)
    lines = received(server)
    assert len(lines) == N - 1 and items[5].key not in {line["key"] for line in lines}
    assert server.stats()["rejected"] == 1


def test_single_mode_rejected_item_fails_alone(rejecting_receiver, make_destination):
    dest = make_destination(rejecting_receiver, mode="single", concurrency=4)
    items = deliveries(reject={5: "implausible age"})
    check_rejection(rejecting_receiver, dest.send(items), items)


def test_batch_mode_rejected_item_fails_alone(rejecting_receiver, make_destination):
    dest = make_destination(rejecting_receiver, mode="batch", batch_size=7)
    items = deliveries(reject={5: "implausible age"})
    check_rejection(rejecting_receiver, dest.send(items), items)


# -- refused credentials and unreachable destination ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "max_requests"),
    [
        pytest.param({"mode": "single", "concurrency": 4}, 4, id="single"),
        pytest.param({"mode": "batch", "batch_size": 7}, 1, id="batch"),
    ],
)
def test_wrong_password_stops_at_once(receiver, make_destination, options, max_requests):
    secret = "Not-The-Password-42"
    dest = make_destination(receiver, password=secret, **options)
    with pytest.raises(AuthError) as err:
        dest.send(deliveries())
    assert err.value.conn_id == CONN_ID and err.value.status == 401
    assert CONN_ID in str(err.value) and secret not in str(err.value)
    with pytest.raises(AuthError):  # once refused, a later call raises at once
        dest.send(deliveries(3))
    dest.close()  # waits for requests still in flight in the worker threads

    refused = receiver.stats()["unauthorized"]
    assert 1 <= refused <= max_requests  # at most one request per worker, over both calls
    assert dest.requests == refused  # every request made reached the receiver and was refused
    assert receiver.stats()["requests"] == 0 and received(receiver) == []


@pytest.mark.parametrize(
    ("options", "most_requests"),
    [
        pytest.param({"mode": "single", "concurrency": 4}, 4 + 3, id="single"),  # + requests in flight
        pytest.param({"mode": "batch", "batch_size": 2}, 4, id="batch"),
    ],
)
def test_closed_port_is_retried_then_stops_the_sending(receiver, make_destination, options, most_requests):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    policy = RetryPolicy(retries=1, breaker_after=4)
    dest = make_destination(receiver, url=f"http://127.0.0.1:{port}", retry=policy, sleep=waits.append, **options)
    with pytest.raises(CircuitOpenError) as err:
        dest.send(deliveries(5))
    assert isinstance(err.value, TransportError)
    assert 4 <= dest.requests <= most_requests and waits
    assert all(r.retryable and r.status is None and r.error == "ConnectionError" for r in err.value.results)
    assert CONN_ID in str(err.value) and "(last: ConnectionError)" in str(err.value)
    assert receiver.credentials["password"] not in str(err.value)
