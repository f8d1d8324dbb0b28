"""Delivery you can trust, end to end: whole pipeline DAGs (``dag.test()``) against a real local
CouchDB-protocol server and a receiver that misbehaves on purpose.

Every document must arrive exactly once (counted by ``Idempotency-Key`` at the receiver) through
injected 5xx, 429 and timeouts; permanent refusals become dead letters with the receiver's reason
and are replayed once the receiver is fixed; retryable refusals stay pending, are retried first by
the next runs and die after ``dead_after`` runs; an outage opens the circuit breaker without the
checkpoint passing what was not delivered; deletes in CHT become DELETE requests when asked to.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from cht_bridge.destinations.rest import RestDestination
from standins.receiver import Receiver
from tests.conftest import received, receiver_connection
from tests.integration.dagrun import PREGNANCY_PIPELINE, run_dag, state_store, write_pipeline

pytestmark = pytest.mark.integration

# A destination timeout shorter than the receiver's hang: the client gives up on a request that the
# receiver then stores anyway, so the retry (same key) or the late original is a duplicate.
TIMEOUT, HANG = 0.3, 0.6
# Small backoffs keep the runs fast; max_backoff must be >= the 429's ``Retry-After: 1`` or the
# request is not retried in the run (it would wait for the next run instead).
FAST = {"backoff_seconds": 0.02, "max_backoff_seconds": 1.0}
PREGNANCY_MAPPING = PREGNANCY_PIPELINE["mapping"]
FLAG = {"path": "doc.fields.flag", "optional": True}  # copied into the payload only when set


def settled(receiver: Receiver, mode: str) -> dict:
    """The receiver's stats once the requests the client gave up on have been handled: a hung
    handler stores its items, or drops them as duplicates, ``HANG`` seconds after they came."""
    time.sleep(HANG)
    if mode != "single":
        time.sleep(0.5)
        return receiver.stats()
    deadline = time.monotonic() + 10
    while True:  # single mode: every request not answered with an injected error is stored or dropped
        stats = receiver.stats()
        if stats["items"] + stats["duplicates"] + stats["failed"] == stats["requests"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def pregnancies(cht) -> dict[str, dict]:
    return {d["_id"]: d for d in cht.all_docs() if d.get("type") == "data_record" and d.get("form") == "pregnancy"}


def arrivals(server) -> Counter:
    """How many times each report was stored by the receiver (it stores a key once)."""
    return Counter(item["payload"]["report_id"] for item in received(server))


def flag(cht, docs: list[dict], reason: str) -> dict[str, str]:
    """Give ``docs`` a ``fields.flag`` (the mapping copies it; the receiver may reject on it)."""
    flags = {}
    for i, doc in enumerate(docs):
        doc["fields"]["flag"] = flags[doc["_id"]] = f"{reason} #{i}"
    cht.put(*docs)
    return flags


def log_text(capfd, caplog) -> str:
    """What the run logged: Airflow prints task logs to stdout, but once pytest's handler is on the
    root logger, records of plain module loggers (e.g. the REST destination's) may land there."""
    text = "".join(capfd.readouterr()) + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def log_lines(capfd) -> list[str]:
    """The task log (the operator's own lines, in order) since the last read."""
    return "".join(capfd.readouterr()).splitlines()


def index_of(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


@pytest.fixture
def world(request, cht, monkeypatch, airflow_db, tmp_path):
    """A seeded CHT (200 docs, or the test's indirect param), its Connection, a pipeline name unique
    to the test, a receiver factory and a pipeline-file writer."""
    cht.seed(getattr(request, "param", 200))
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection())
    name = f"dlv_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "pipelines"
    started: list[Receiver] = []

    def start_receiver(**settings) -> Receiver:
        creds = {"username": "bridge", "password": uuid.uuid4().hex}
        server = Receiver(tmp_path / f"rx{len(started)}", credentials=creds, **settings).start()
        server.credentials = creds
        started.append(server)
        monkeypatch.setenv("AIRFLOW_CONN_RECEIVER_TEST", receiver_connection(server))
        return server

    def pipeline(**overrides) -> None:
        write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db}, **overrides)

    yield cht, folder, name, start_receiver, pipeline
    for server in started:
        server.stop()


# -- 1. fault injection ---------------------------------------------------------------------------


@pytest.mark.parametrize("world", [400], indirect=True)  # ~80 pregnancies: ~100 requests in single mode
@pytest.mark.parametrize("mode", ["single", "batch"])
def test_every_document_arrives_exactly_once_through_injected_5xx_429_and_timeouts(
    world, monkeypatch, capfd, caplog, mode
):
    cht, folder, name, start_receiver, pipeline = world
    expected = pregnancies(cht)
    receiver = start_receiver(fail_rate=0.2, seed=3, hang_seconds=HANG)
    destination = {
        "conn_id": "receiver_test",
        "path": "/emr/anc",
        "auth": {"type": "basic"},
        "mode": mode,
        "batch_size": 3,  # batch mode: enough requests for the 20 % to hit some
        "timeout": TIMEOUT,
    }
    # breaker_after 10: it opens only after 10 failed tries in a row. Each try fails independently
    # with p = 0.2, so a given run of 10 has p = 0.2**10 ~ 1e-7, and a run of ~60-100 tries has
    # ~1e-5 of containing one (and the receiver's Random is seeded). retries 8: a document fails
    # for good only if 9 tries in a row fail (0.2**9 ~ 5e-7 per document).
    pipeline(destination=destination, delivery={**FAST, "retries": 8, "breaker_after": 10})

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    stats = settled(receiver, mode)

    counts = arrivals(receiver)
    assert set(counts) == set(expected) and set(counts.values()) == {1}
    keys = [item["key"] for item in received(receiver)]
    assert len(keys) == len(set(keys)) == len(expected) == stats["items"]

    assert summary["relevant"] == summary["sent"] == len(expected)
    assert summary["failed"] == 0 and summary["dead_lettered"] == 0
    assert summary["request_retries"] > 0
    assert stats["failed"] > 0 and stats["hung"] > 0  # 5xx/429 answered, and timeouts
    # Each kind of fault was met and retried (the receiver's Random is seeded, so this is stable).
    retried = log_text(capfd, caplog)
    for reason in (
        r"HTTP 500: Internal Server Error; sending \d item\(s\) again",
        r"HTTP 503: Service Unavailable; sending \d item\(s\) again",
        r"HTTP 429: Too Many Requests; sending \d item\(s\) again in 1\.0 s",  # waits its Retry-After: 1
        rf"timeout after {TIMEOUT:g} s; sending \d item\(s\) again",
    ):
        assert re.search(reason, retried), reason
    # Every injected failure was repeated (a slow answer on a busy machine may add a repeat of its own).
    assert summary["request_retries"] >= stats["failed"] + stats["hung"]
    if mode == "single":
        # One request per document, plus the repeats. A repeat not caused by an error answer follows
        # a request the receiver did process (after the client gave up on it): exactly one of the two
        # was stored and the other dropped as a duplicate.
        assert stats["requests"] == len(expected) + summary["request_retries"]
        assert stats["duplicates"] == summary["request_retries"] - stats["failed"] >= stats["hung"]
    else:
        assert stats["requests"] < len(expected)  # arrays, not one request per document
        # every item of a hung batch, once; at most batch_size per repeat not caused by an error answer
        assert stats["hung"] <= stats["duplicates"] <= 3 * (summary["request_retries"] - stats["failed"])
    store = state_store()
    assert store.counts(name) == {"delivered": len(expected)}
    assert all(store.ledger(name, doc_id)["status"] == "delivered" for doc_id in expected)


# -- 2. dead letters and replay -------------------------------------------------------------------


def test_permanent_400s_become_dead_letters_with_the_reason_and_a_replay_delivers_them(world, monkeypatch, capfd):
    cht, folder, name, start_receiver, pipeline = world
    docs = pregnancies(cht)
    bad = flag(cht, [docs[i] for i in sorted(docs)[:4]], "implausible lmp_date")
    receiver = start_receiver(reject_field="flag", reject_status=400)
    pipeline(mapping={**PREGNANCY_MAPPING, "flag": FLAG}, delivery=FAST)

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["dead_lettered"] == len(bad) and summary["failed"] == 0
    assert summary["sent"] == len(docs) - len(bad)
    counts = arrivals(receiver)
    assert set(counts) == set(docs) - set(bad) and set(counts.values()) == {1}

    store = state_store()
    for doc_id, reason in bad.items():
        row = store.ledger(name, doc_id)
        assert row["status"] == "dead" and row["response_status"] == 400
        assert row["last_error"] == f"HTTP 400: rejected: {reason}"
        assert row["delivered_hash"] is None
    assert [r["doc_id"] for r in store.select(name)] == sorted(bad)
    with store.engine.connect() as conn:
        view = conn.execute(
            text("SELECT doc_id, response_status, last_error FROM cht_bridge_dead_letters WHERE pipeline = :p"),
            {"p": name},
        ).all()
    assert sorted(view) == sorted((d, 400, f"HTTP 400: rejected: {r}") for d, r in bad.items())

    # The task log ends with the ledger: counts, then the dead letters with their reasons.
    lines = log_lines(capfd)
    ran = index_of(lines, f"pipeline {name} changes done:")
    ledger = index_of(lines, f"pipeline {name} ledger: dead={len(bad)}, delivered={len(docs) - len(bad)}")
    letters = index_of(lines, f"pipeline {name}: {len(bad)} dead letters (replay them with the cht_bridge_replay")
    assert ran < ledger < letters
    tail = "\n".join(lines[letters:])
    assert all(f"{doc_id} [dead] (HTTP 400): HTTP 400: rejected: {r}" in tail for doc_id, r in bad.items())

    # A dry-run replay sends nothing, changes no ledger row, and writes what it would send to a file.
    before_rows = {doc_id: store.ledger(name, doc_id) for doc_id in bad}
    before_requests = receiver.stats()["requests"]
    state, summary = run_dag(monkeypatch, folder, "cht_bridge_replay", {"pipeline": name, "dry_run": True})
    assert state == "success" and summary["dry_run"] is True and summary["sent"] == 0
    assert receiver.stats()["requests"] == before_requests
    assert {doc_id: store.ledger(name, doc_id) for doc_id in bad} == before_rows
    artifact = json.loads(Path(summary["artifact"]).read_text())
    assert artifact["would_send"] == len(bad)
    assert sorted(p["doc_id"] for p in artifact["payloads"]) == sorted(bad)

    # A replay of chosen doc_ids sends only those: the receiver still refuses, so it stays dead.
    first, others = sorted(bad)[0], sorted(bad)[1:]
    state, summary = run_dag(
        monkeypatch, folder, "cht_bridge_replay", {"pipeline": name, "status": "dead", "doc_ids": [first]}
    )
    assert state == "success"
    assert (summary["kind"], summary["retried"], summary["sent"], summary["dead_lettered"]) == ("replay", 1, 0, 1)
    stats = receiver.stats()
    assert (stats["requests"], stats["rejected"]) == (before_requests + 1, len(bad) + 1)
    row = store.ledger(name, first)
    assert (row["status"], row["attempts"]) == ("dead", 2) and row["last_error"] == f"HTTP 400: rejected: {bad[first]}"
    assert {doc_id: store.ledger(name, doc_id) for doc_id in others} == {d: before_rows[d] for d in others}

    # Fix the receiver, then replay every dead letter: each arrives once, with the same payload.
    receiver.configure(reject_field=None)
    state, summary = run_dag(monkeypatch, folder, "cht_bridge_replay", {"pipeline": name, "status": "dead"})
    assert state == "success"
    assert summary["sent"] == summary["retried"] == len(bad)
    assert summary["failed"] == summary["dead_lettered"] == 0
    counts = arrivals(receiver)
    assert set(counts) == set(docs) and set(counts.values()) == {1}
    assert receiver.stats()["duplicates"] == 0
    for doc_id in bad:
        row = store.ledger(name, doc_id)
        assert (row["status"], row["response_status"], row["failures"]) == ("delivered", 201, 0)
    assert store.select(name) == []
    delivered = [item["payload"] for item in received(receiver) if item["payload"]["report_id"] in bad]
    assert sorted(p["flag"] for p in delivered) == sorted(bad.values())  # the same payloads, now accepted


# -- 3. batch bisection ---------------------------------------------------------------------------


def test_a_batch_refused_whole_is_bisected_so_its_good_documents_arrive(world, monkeypatch):
    cht, folder, name, start_receiver, pipeline = world
    docs = pregnancies(cht)
    ordered = sorted(docs)
    bad = flag(cht, [docs[ordered[i]] for i in (3, 17, 18)], "no such facility")
    receiver = start_receiver(reject_field="flag", reject_status=400, reject_batch=True)
    destination = {"conn_id": "receiver_test", "path": "/emr/anc", "auth": {"type": "basic"}, "mode": "batch"}
    pipeline(mapping={**PREGNANCY_MAPPING, "flag": FLAG}, destination={**destination, "batch_size": 8}, delivery=FAST)

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["sent"] == len(docs) - len(bad)
    assert summary["dead_lettered"] == len(bad) and summary["failed"] == 0
    counts = arrivals(receiver)
    assert set(counts) == set(docs) - set(bad) and set(counts.values()) == {1}
    stats = receiver.stats()
    assert stats["duplicates"] == 0  # a refused batch stores nothing, so its halves are all new
    assert stats["rejected"] > len(bad)  # the bad items were refused in the whole batch, then in halves
    store = state_store()
    for doc_id, reason in bad.items():
        row = store.ledger(name, doc_id)
        assert row["status"] == "dead" and row["response_status"] == 400
        assert row["last_error"].startswith(f"HTTP 400: rejected: {reason}")
    assert store.counts(name) == {"delivered": len(docs) - len(bad), "dead": len(bad)}


# -- 4. retryable failures: pending, retried first, dead after dead_after runs ---------------------


def test_retryable_failures_stay_pending_are_retried_first_and_die_after_dead_after_runs(world, monkeypatch, capfd):
    cht, folder, name, start_receiver, pipeline = world
    docs = pregnancies(cht)
    ordered = sorted(docs)
    bad = flag(cht, [docs[i] for i in ordered[:3]], "busy")
    # Only the flagged documents get 503 (retryable); the others succeed. Every success resets the
    # breaker, and the flagged ones make at most 3 docs x 2 tries = 6 failed tries in a row < 10:
    # the breaker cannot open, whatever the interleaving of the 4 workers.
    receiver = start_receiver(reject_field="flag", reject_status=503)
    delivery = {**FAST, "retries": 1, "breaker_after": 10, "dead_after": 3}
    pipeline(mapping={**PREGNANCY_MAPPING, "flag": FLAG}, delivery=delivery)
    store = state_store()

    # Run 1: the flagged ones fail (each request tried twice), stay pending; the checkpoint moves on.
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["failed"] == len(bad) and summary["dead_lettered"] == 0
    assert summary["request_retries"] == len(bad)
    assert summary["sent"] == len(docs) - len(bad)
    assert store.checkpoint(name) == cht.last_seq()
    assert [r["doc_id"] for r in store.pending(name)] == sorted(bad)
    for doc_id, reason in bad.items():
        row = store.ledger(name, doc_id)
        assert (row["status"], row["failures"], row["response_status"]) == ("failed", 1, 503)
        assert row["last_error"] == f"HTTP 503: rejected: {reason}"
    capfd.readouterr()

    # Between runs: one flagged document is corrected in CHT, and new reports come in.
    fixed = ordered[0]
    doc = cht.get(fixed)
    del doc["fields"]["flag"]
    template = {k: v for k, v in docs[ordered[-1]].items() if k != "_rev"}
    new_docs = [{**template, "_id": f"new-preg-{i}"} for i in range(3)]
    cht.put(doc, *new_docs)
    before = len(received(receiver))

    # Run 2: the pending ones go first (the corrected one arrives), then the new changes.
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["retried"] == len(bad)
    assert summary["failed"] == len(bad) - 1 and summary["dead_lettered"] == 0
    assert summary["sent"] == 1 + len(new_docs)
    lines = log_lines(capfd)
    retrying = index_of(lines, f"pipeline {name}: retrying {len(bad)} documents that earlier runs could not deliver")
    assert (
        retrying < index_of(lines, f"pipeline {name} retry batch") < index_of(lines, f"pipeline {name} changes batch")
    )
    new_ids = [d["_id"] for d in new_docs]
    new = [item["payload"]["report_id"] for item in received(receiver)[before:]]
    assert new[0] == fixed and sorted(new[1:]) == new_ids  # the retried one arrived before the new ones
    assert store.ledger(name, fixed)["status"] == "delivered"
    assert all(store.ledger(name, d)["failures"] == 2 for d in ordered[1:3])

    # Run 3: the third failed run in a row makes them dead letters; nothing is pending any more.
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["retried"] == len(bad) - 1
    assert summary["dead_lettered"] == len(bad) - 1 and summary["failed"] == 0 and summary["sent"] == 0
    assert store.pending(name) == []
    for doc_id in ordered[1:3]:
        row = store.ledger(name, doc_id)
        assert (row["status"], row["failures"], row["response_status"]) == ("dead", 3, 503)
        assert row["last_error"] == f"HTTP 503: rejected: {bad[doc_id]}"
    assert [r["doc_id"] for r in store.select(name)] == ordered[1:3]
    counts = arrivals(receiver)
    assert set(counts) == (set(docs) - set(ordered[1:3])) | set(new_ids) and set(counts.values()) == {1}


# -- 5. circuit breaker ---------------------------------------------------------------------------


def test_an_outage_opens_the_breaker_the_checkpoint_stays_and_the_next_run_delivers_all_once(
    world, monkeypatch, capfd, caplog
):
    cht, folder, name, start_receiver, pipeline = world
    docs = pregnancies(cht)
    receiver = start_receiver()
    # Pages of 100 changes: ~18 pregnancies in the first, ~21 in the second. retries 0: each try of
    # the outage is one document's only try, so the 5 before the breaker opens are recorded failed.
    pipeline(batch_size=100, delivery={**FAST, "retries": 0, "breaker_after": 6})

    # The receiver goes down (every request 503) after the first batch that had documents to send.
    real_send = RestDestination.send

    def send_then_break(self, deliveries):
        results = real_send(self, deliveries)
        if deliveries:
            receiver.configure(fail_rate=1.0, fail_kinds=("503",))
        return results

    monkeypatch.setattr(RestDestination, "send", send_then_break)
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    text_log = log_text(capfd, caplog)
    match = re.search(r"destination connection 'receiver_test' failed (\d+) times in a row", text_log)
    assert match and int(match.group(1)) >= 6, text_log[-3000:]
    assert "(last: HTTP 503: Service Unavailable)" in text_log

    store = state_store()
    checkpoint = store.checkpoint(name)
    assert checkpoint is not None  # the first batch was handled
    feed = requests.get(f"{cht.db_url}/_changes", auth=cht.admin, timeout=60).json()["results"]
    passed = {row["id"] for row in feed[: next(i for i, row in enumerate(feed) if row["seq"] == checkpoint) + 1]}
    first_run = {d for d in docs if d in passed}
    assert first_run and first_run < set(docs)  # some delivered, some not reached
    # Nothing the checkpoint passed is undelivered; everything after it is not yet delivered.
    assert all(store.ledger(name, d)["status"] == "delivered" for d in first_run)
    rest = set(docs) - first_run
    statuses = Counter((store.ledger(name, d) or {}).get("status") for d in rest)
    # Tried before the breaker opened, or not tried: no row. An outage must not use up dead_after;
    # the checkpoint before them is what brings them back.
    assert statuses == {None: len(rest)}
    assert set(arrivals(receiver)) == first_run

    # The receiver is back: the next run delivers everything exactly once.
    monkeypatch.setattr(RestDestination, "send", real_send)
    receiver.configure(fail_rate=0.0)
    pending = len(store.pending(name))
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["retried"] == pending == 0 and summary["failed"] == 0
    assert summary["sent"] == len(rest)
    counts = arrivals(receiver)
    assert set(counts) == set(docs) and set(counts.values()) == {1}
    assert receiver.stats()["duplicates"] == 0
    assert store.checkpoint(name) == cht.last_seq()
    assert store.counts(name) == {"delivered": len(docs)}


# -- 6. deletes -----------------------------------------------------------------------------------


class Capture:
    """A tiny EMR: 201 ``{"id": "emr-<report_id>"}`` to POST, 204 to DELETE; records every request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Idempotency-Key)
        lock = threading.Lock()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    seen.append(("POST", self.path, self.headers.get("Idempotency-Key")))
                self._reply(201, {"id": f"emr-{payload['report_id']}"})

            def do_DELETE(self) -> None:  # noqa: N802 - stdlib naming
                with lock:
                    seen.append(("DELETE", self.path, self.headers.get("Idempotency-Key")))
                self._reply(204)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self.thread.start()

    def requests(self, method: str, prefix: str) -> list[str]:
        return [path for m, path, _ in self.seen if m == method and path.startswith(prefix)]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture():
    server = Capture()
    yield server
    server.stop()


def test_deletes_in_cht_send_delete_requests_with_action_send_and_nothing_by_default(world, monkeypatch, capture):
    cht, folder, name, _start_receiver, _pipeline = world
    docs = pregnancies(cht)
    monkeypatch.setenv("AIRFLOW_CONN_CAPTURE_TEST", json.dumps({"conn_type": "http", "host": capture.url}))
    cht_conf = {"conn_id": "cht_test", "db": cht.db}
    deletes = {"action": "send", "method": "DELETE", "path": "/emr/anc/{destination_id}"}
    sending, ignoring = name, f"{name}_ignore"
    write_pipeline(
        folder, sending, cht=cht_conf, destination={"conn_id": "capture_test", "path": "/emr/anc"}, deletes=deletes
    )
    write_pipeline(folder, ignoring, cht=cht_conf, destination={"conn_id": "capture_test", "path": "/ignore/anc"})

    for dag_id in (sending, ignoring):
        state, summary = run_dag(monkeypatch, folder, dag_id)
        assert state == "success" and summary["sent"] == len(docs) and summary["deleted"] == 0
    assert capture.requests("POST", "/emr/anc") == ["/emr/anc"] * len(docs)
    assert capture.requests("POST", "/ignore/anc") == ["/ignore/anc"] * len(docs)
    assert capture.requests("DELETE", "/") == []  # the seed's own deletions were never delivered

    store = state_store()
    gone = sorted(docs)[:3]
    cht.put(*({"_id": d, "_rev": docs[d]["_rev"], "_deleted": True} for d in gone))

    state, summary = run_dag(monkeypatch, folder, sending)
    assert state == "success"
    assert summary["deleted"] == len(gone) and summary["tombstones"] == len(gone) and summary["sent"] == 0
    assert sorted(capture.requests("DELETE", "/")) == sorted(f"/emr/anc/emr-{d}" for d in gone)
    keys = [key for m, _, key in capture.seen if m == "DELETE"]
    assert len(set(keys)) == len(gone) and all(keys)
    for d in gone:
        row = store.ledger(name, d)
        assert (row["status"], row["operation"], row["response_status"]) == ("deleted", "delete", 204)
        assert row["delivered_hash"] is None
    assert store.counts(sending) == {"delivered": len(docs) - len(gone), "deleted": len(gone)}

    # With the default (deletes: ignore) the same tombstones send nothing.
    posts = len(capture.seen)
    state, summary = run_dag(monkeypatch, folder, ignoring)
    assert state == "success"
    assert summary["tombstones"] == len(gone) and summary["deleted"] == 0 and summary["sent"] == 0
    assert len(capture.seen) == posts
    assert store.counts(ignoring) == {"delivered": len(docs)}
