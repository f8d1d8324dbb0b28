"""``RestDestination`` retries, backoff, the circuit breaker and batch bisection, against a local
HTTP server whose answers are scripted per request. Waits are recorded instead of slept."""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from cht_bridge.destinations import Delivery, RestDestination, Result
from cht_bridge.errors import AuthError, CircuitOpenError, TransportError
from cht_bridge.http.retry import RetryPolicy

pytestmark = pytest.mark.integration

PATH = "/api/records"


@dataclass
class Seen:
    """One request as the server got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def items(self) -> list[dict]:
        payload = json.loads(self.body)
        return payload if isinstance(payload, list) else [payload]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (a slow server)


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        server: Scripted = self.server.scripted  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with server.lock:
            server.seen.append(seen)
            n = len(server.seen)
        reply = server.script(seen, n)
        if reply.delay:
            threading.Event().wait(reply.delay)
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            pass

    do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - stdlib naming

    def log_message(self, *args: Any) -> None:
        pass


class Scripted:
    """A local server answering request number ``n`` (from 1) with ``script(seen, n)``."""

    def __init__(self, script: Callable[[Seen, int], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.scripted = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def sequence(*replies: Reply) -> Callable[[Seen, int], Reply]:
    """Answer the n-th request with the n-th reply, and every later one with the last."""
    return lambda seen, n: replies[min(n, len(replies)) - 1]


def created(seen: Seen, n: int) -> Reply:
    return Reply(201, {"id": f"r{n}"})


def batch_ok(items: list[dict], status: Callable[[dict], int] = lambda item: 201) -> Reply:
    results = []
    for item in items:
        code = status(item)
        results.append({"id": f"id-{item['n']}", "status": code} if code < 400 else {"status": code, "error": "busy"})
    return Reply(200, {"results": results})


def deliveries(n: int, **flags: set[int]) -> list[Delivery]:
    """``n`` payloads ``{"n": i}``; ``flags`` name indices that carry ``{flag: true}``."""
    out = []
    for i in range(n):
        payload: dict[str, Any] = {"n": i}
        payload.update({flag: True for flag, indices in flags.items() if i in indices})
        out.append(Delivery(f"doc{i:02d}", json.dumps(payload), f"key{i:02d}"))
    return out


@pytest.fixture
def serve():
    """Start scripted servers and build destinations against them; close everything afterwards."""
    servers: list[Scripted] = []
    made: list[RestDestination] = []

    def start(script: Callable[[Seen, int], Reply], **options: Any) -> tuple[Scripted, RestDestination, list[float]]:
        server = Scripted(script)
        servers.append(server)
        waits: list[float] = []
        options.setdefault("concurrency", 1)
        options.setdefault("timeout", 5.0)
        dest = RestDestination(
            requests.Session(),
            server.url,
            PATH,
            conn_id="emr",
            sleep=waits.append,
            rng=random.Random(3),
            **options,
        )
        made.append(dest)
        return server, dest, waits

    yield start
    for dest in made:
        dest.close()
    for server in servers:
        server.close()


# -- one request at a time ---------------------------------------------------------------------------


def test_unavailable_twice_then_created(serve):
    server, dest, waits = serve(sequence(Reply(503, {"error": "starting"}), Reply(503), Reply(201, {"id": "p1"})))
    (result,) = dest.send(deliveries(1))

    assert result == Result("doc00", True, 201, "p1", attempts=3)
    assert dest.requests == 3 and dest.retries == 2 and len(server.seen) == 3
    assert {s.headers["idempotency-key"] for s in server.seen} == {"key00"}  # the same key on every try
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # backoff_s * 2**n, jittered


def test_too_many_requests_waits_as_long_as_retry_after_says(serve):
    server, dest, waits = serve(sequence(Reply(429, {"error": "slow down"}, {"Retry-After": "2"}), Reply(201)))
    (result,) = dest.send(deliveries(1))

    assert result.ok and result.status == 201 and result.attempts == 2
    assert waits == [pytest.approx(2.0)] and waits[0] >= 2
    assert dest.retries == 1


def test_a_retry_after_beyond_max_backoff_is_left_to_the_next_run(serve):
    server, dest, waits = serve(sequence(Reply(429, {"error": "quota exceeded"}, {"Retry-After": "3600"})))
    (result,) = dest.send(deliveries(1))

    assert not result.ok and result.retryable and result.status == 429 and result.attempts == 1
    assert result.error == "HTTP 429: quota exceeded; the destination asked to wait 3600 s"
    assert waits == [] and len(server.seen) == 1  # no worker held for an hour


def test_a_timeout_is_retried_with_the_same_key(serve):
    slow = Reply(201, {"id": "late"}, delay=1.0)
    server, dest, waits = serve(sequence(slow, Reply(201, {"id": "p1"})), timeout=0.2)
    (result,) = dest.send(deliveries(1))

    assert result.ok and result.destination_id == "p1" and result.attempts == 2
    assert [s.headers["idempotency-key"] for s in server.seen] == ["key00", "key00"]
    assert dest.retries == 1 and len(waits) == 1


def test_a_destination_that_always_times_out_gives_a_retryable_failure(serve):
    server, dest, waits = serve(
        lambda seen, n: Reply(201, delay=1.0), timeout=0.2, retry=RetryPolicy(retries=1, breaker_after=10)
    )
    (result,) = dest.send(deliveries(1))

    assert result == Result("doc00", False, None, error="timeout after 0.2 s", retryable=True, attempts=2)
    assert dest.requests == 2 and len(waits) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_a_refusal_is_permanent_and_not_retried(serve, status):
    server, dest, waits = serve(sequence(Reply(status, {"error": "name is required"})))
    (result,) = dest.send(deliveries(1))

    assert result == Result("doc00", False, status, error=f"HTTP {status}: name is required", attempts=1)
    assert not result.retryable
    assert dest.requests == 1 and dest.retries == 0 and waits == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_stop_after_one_request(serve, status):
    server, dest, waits = serve(sequence(Reply(status, {"error": "bad credentials"})))
    with pytest.raises(AuthError) as err:
        dest.send(deliveries(3))
    assert err.value.status == status and len(server.seen) == 1
    with pytest.raises(AuthError):  # a later call raises at once
        dest.send(deliveries(3))
    assert len(server.seen) == 1 and dest.requests == 1 and waits == []


# -- the circuit breaker ---------------------------------------------------------------------------------


def test_a_destination_that_is_down_opens_the_breaker(serve):
    policy = RetryPolicy(retries=2, breaker_after=5)
    server, dest, waits = serve(sequence(Reply(503, {"error": "down for maintenance"})), retry=policy)

    with pytest.raises(CircuitOpenError) as err:
        dest.send(deliveries(4))

    assert isinstance(err.value, TransportError)  # callers that stop on TransportError still stop
    assert len(server.seen) == 5 and dest.requests == 5  # doc00: 3 tries, doc01: 2 tries, then nothing
    assert err.value.results == [
        Result("doc00", False, 503, error="HTTP 503: down for maintenance", retryable=True, attempts=3)
    ]
    assert err.value.conn_id == "emr" and err.value.failures == 5
    assert str(err.value) == (
        "destination connection 'emr' failed 5 times in a row (last: HTTP 503: down for maintenance); "
        "stopped sending. The documents not yet delivered stay pending and the next run resumes."
    )
    with pytest.raises(CircuitOpenError) as again:  # a later call sends nothing
        dest.send(deliveries(2))
    assert again.value.results == [] and len(server.seen) == 5


def test_the_breaker_stops_every_worker_thread(serve):
    policy = RetryPolicy(retries=3, breaker_after=6)
    server, dest, waits = serve(sequence(Reply(502)), retry=policy, concurrency=4)

    with pytest.raises(CircuitOpenError) as err:
        dest.send(deliveries(40))
    sent = len(server.seen)
    assert 6 <= sent <= 6 + 3  # at most the requests already in flight in the other workers
    assert all(r.retryable and r.attempts == 4 for r in err.value.results)
    dest.close()
    assert len(server.seen) == sent == dest.requests


def test_answers_in_between_keep_the_breaker_closed(serve):
    """Only failures in a row count: a document the destination accepts resets the count."""

    def script(seen: Seen, n: int) -> Reply:
        return Reply(503) if seen.items[0].get("down") else Reply(201)

    server, dest, waits = serve(script, retry=RetryPolicy(retries=1, breaker_after=3))
    results = dest.send(deliveries(6, down={0, 2, 4}))

    assert [r.ok for r in results] == [False, True, False, True, False, True]
    assert all(r.retryable and r.attempts == 2 for r in results[::2])
    assert dest.requests == 9


def test_permanent_refusals_keep_the_breaker_closed(serve):
    def script(seen: Seen, n: int) -> Reply:
        return Reply(503) if seen.items[0].get("down") else Reply(422, {"error": "invalid"})

    server, dest, waits = serve(script, retry=RetryPolicy(retries=1, breaker_after=3))
    results = dest.send(deliveries(6, down={0, 2, 4}))

    assert [r.retryable for r in results] == [True, False, True, False, True, False]


# -- batches -------------------------------------------------------------------------------------------


def rejecting(seen: Seen, n: int) -> Reply:
    """A strict receiver: one bad item fails the whole array, and it does not say which."""
    if any(item.get("bad") for item in seen.items):
        return Reply(400, {"error": "validation failed"})
    return batch_ok(seen.items)


def test_a_refused_batch_is_bisected_to_the_bad_item(serve):
    server, dest, waits = serve(rejecting, mode="batch", batch_size=16)
    results = dest.send(deliveries(16, bad={5}))

    assert [r.doc_id for r in results] == [f"doc{i:02d}" for i in range(16)]
    bad = results[5]
    assert bad == Result("doc05", False, 400, error="HTTP 400: validation failed", attempts=5)  # 16, 8, 4, 2, 1
    assert all(r.ok and r.status == 201 and r.destination_id == f"id-{i}" for i, r in enumerate(results) if i != 5)
    assert len(server.seen) == 1 + 2 * 4  # the whole batch, then two halves per level: log2(16) levels
    accepted = [item["n"] for s in server.seen if not any(i.get("bad") for i in s.items) for item in s.items]
    assert sorted(accepted) == [i for i in range(16) if i != 5]  # every good item accepted exactly once
    assert waits == [] and dest.retries == 0


def test_bisection_with_several_bad_items(serve):
    server, dest, waits = serve(rejecting, mode="batch", batch_size=32)
    bad = {3, 17, 30}
    results = dest.send(deliveries(32, bad=bad))

    assert {i for i, r in enumerate(results) if not r.ok} == bad
    assert all(not r.retryable and r.error == "HTTP 400: validation failed" for r in results if not r.ok)
    assert len(server.seen) < 2 * 32  # far fewer than the 32 single requests plus the failed batches
    assert len(server.seen) <= 1 + 2 * 5 * len(bad)


def test_a_redirected_batch_is_not_bisected(serve):
    location = {"Location": "https://elsewhere.example/api/records"}
    server, dest, waits = serve(sequence(Reply(308, headers=location)), mode="batch")
    results = dest.send(deliveries(4))

    reason = "HTTP 308: redirected to https://elsewhere.example/api/records; fix the connection's URL"
    assert all(not r.ok and not r.retryable and r.status == 308 and r.error == reason for r in results)
    assert len(server.seen) == 1


def test_a_batch_sent_to_a_wrong_path_is_not_bisected(serve):
    server, dest, waits = serve(sequence(Reply(404, {"error": "no route"})), mode="batch")
    results = dest.send(deliveries(8))

    assert all(not r.ok and not r.retryable and r.error == "HTTP 404: no route" for r in results)
    assert len(server.seen) == 1


def test_only_the_items_answered_503_are_sent_again(serve):
    first_try: set[int] = set()

    def script(seen: Seen, n: int) -> Reply:
        def status(item: dict) -> int:
            if item.get("flaky") and item["n"] not in first_try:
                first_try.add(item["n"])
                return 503
            return 201

        return batch_ok(seen.items, status)

    server, dest, waits = serve(script, mode="batch", batch_size=10)
    results = dest.send(deliveries(10, flaky={2, 7}))

    assert all(r.ok and r.status == 201 for r in results)
    assert [r.attempts for r in results] == [1, 1, 2, 1, 1, 1, 1, 2, 1, 1]
    first, second = server.seen
    assert [i["n"] for i in second.items] == [2, 7]
    assert second.headers["idempotency-keys"] == "key02,key07"  # their own keys
    assert second.headers["idempotency-key"] != first.headers["idempotency-key"]
    assert dest.retries == 1 and len(waits) == 1


def test_item_statuses_that_stay_retryable_or_are_permanent(serve):
    def script(seen: Seen, n: int) -> Reply:
        return batch_ok(seen.items, lambda item: 429 if item.get("busy") else 409 if item.get("dup") else 201)

    server, dest, waits = serve(script, mode="batch", retry=RetryPolicy(retries=2))
    results = dest.send(deliveries(5, busy={1}, dup={3}))

    assert [r.ok for r in results] == [True, False, True, False, True]
    assert results[1] == Result("doc01", False, 429, error="HTTP 429: busy", retryable=True, attempts=3)
    assert results[3] == Result("doc03", False, 409, error="HTTP 409: busy", retryable=False, attempts=1)
    assert [len(s.items) for s in server.seen] == [5, 1, 1]


def test_a_batch_answered_503_is_retried_whole_then_left_pending(serve):
    server, dest, waits = serve(sequence(Reply(503, {"error": "overloaded"})), mode="batch", batch_size=3)
    results = dest.send(deliveries(3))

    assert all(
        r == Result(r.doc_id, False, 503, error="HTTP 503: overloaded", retryable=True, attempts=5) for r in results
    )
    assert len(server.seen) == 5 and len(waits) == 4
    assert len({s.headers["idempotency-key"] for s in server.seen}) == 1  # the same batch every time


def test_a_delete_override_goes_alone_without_a_body(serve):
    def script(seen: Seen, n: int) -> Reply:
        return Reply(204) if seen.method == "DELETE" else batch_ok(seen.items)

    server, dest, waits = serve(script, mode="batch", batch_size=10)
    items = deliveries(4)
    items.insert(2, Delivery("gone", None, "key-gone", method="DELETE", path="/api/records/gone?cascade=true"))
    results = dest.send(items)

    assert [r.doc_id for r in results] == ["doc00", "doc01", "gone", "doc02", "doc03"]
    assert all(r.ok for r in results) and results[2].status == 204
    (post,) = [s for s in server.seen if s.method == "POST"]
    (delete,) = [s for s in server.seen if s.method == "DELETE"]
    assert [i["n"] for i in post.items] == [0, 1, 2, 3] and post.path == PATH
    assert delete.path == "/api/records/gone?cascade=true" and delete.body == b""
    assert delete.headers["idempotency-key"] == "key-gone"
    assert "content-type" not in delete.headers and "idempotency-keys" not in delete.headers


@pytest.mark.parametrize(
    "reply", [Reply(404, {"error": "no route"}), Reply(405), Reply(301, headers={"Location": "/v2"})]
)
def test_a_wrong_endpoint_opens_the_breaker_instead_of_refusing_every_document(serve, reply):
    """404/405/415 or a redirect for every request blames the URL, not the documents: after
    ``breaker_after`` of them the run stops, rather than dead-lettering the whole feed."""
    server, dest, waits = serve(sequence(reply), retry=RetryPolicy(retries=0, breaker_after=3))
    with pytest.raises(CircuitOpenError) as err:
        dest.send(deliveries(10))
    assert len(server.seen) == 3 and len(err.value.results) == 2  # refused before the breaker opened
    assert all(not r.ok and not r.retryable for r in err.value.results)


def test_a_record_refused_404_among_accepted_ones_keeps_the_breaker_closed(serve):
    def script(seen: Seen, n: int) -> Reply:
        return Reply(404, {"error": "unknown patient"}) if seen.items[0].get("gone") else Reply(201)

    server, dest, waits = serve(script, retry=RetryPolicy(retries=0, breaker_after=2))
    results = dest.send(deliveries(6, gone={0, 2, 4}))
    assert [r.ok for r in results] == [False, True, False, True, False, True]
