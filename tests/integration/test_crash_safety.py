"""Delivery you can trust: a worker killed in the middle of a run, or CouchDB restarted under one,
loses no document and stores none twice at the receiver.

Real parts only: pouchdb-server, the demo receiver (which drops a repeated idempotency key and
keeps every item it accepted in ``received.jsonl``), a SQLite state store, and the product's own
run code. The killed worker is a child process running this module with ``--child``: like
``bench/worker.py`` it opens what the sync task opens (``sync/resources.opened``, without
Airflow's Connections) and calls ``run_pipeline``, and it reads every credential from stdin,
never from argv.

Kill points and the data each iteration adds come from ``random.Random`` seeded with
``CHT_BRIDGE_CRASH_SEED`` (default below); every assertion message names the seed, the mode and
the iteration, so a failure can be replayed.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("CHT_BRIDGE_CRASH_SEED", "5417"))

pytestmark = pytest.mark.integration

ITERATIONS = 10  # kills per mode
NEW_PER_ITERATION = 40  # new relevant reports before each kill
EDITS_PER_ITERATION = 10  # edits of existing reports (delivered, in flight or not yet sent)
PAGE = 20  # changes per page: a run commits its checkpoint many times
BATCH = 5  # items per request in batch mode
CONCURRENCY = 4  # requests in flight in single mode
DELAY = {"single": 0.02, "batch": 0.03}  # receiver seconds per write request: a run lasts long enough to kill


def pipeline_config(name: str, db: str, mode: str, *, cht_conn: str, receiver_conn: str) -> dict[str, Any]:
    """Every report is relevant; ``rev`` makes each revision a distinct payload (and key)."""
    return {
        "name": name,
        "start_date": "2026-01-01",
        "cht": {"conn_id": cht_conn, "db": db},
        "relevant_to": "doc.type === 'data_record' && !!doc.form",
        "mapping": {
            "report_id": "doc._id",
            "rev": "doc._rev",
            "form": "doc.form",
            "reported_at": {"expr": "new Date(doc.reported_date).toISOString()"},
            "chw.id": "doc.contact._id",
            "facility.id": "doc.contact.parent._id",
            "facility.name": {"path": "doc.contact.parent.name", "optional": True},
        },
        "destination": {
            "conn_id": receiver_conn,
            "path": "/crash",
            "auth": {"type": "basic"},
            "mode": mode,
            "batch_size": BATCH,
            "concurrency": CONCURRENCY,
            "timeout": 10,
        },
        "batch_size": PAGE,
        "delivery": {"retries": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    }


# -- the worker process ------------------------------------------------------------------------


def open_run(pipeline: Any, couch_url: str, cht_auth: tuple[str, str], receiver_url: str, receiver_auth, state_url):
    """Client, destination, store and mapper for ``pipeline``, as the sync task opens them
    (``sync.resources.open_resources``) but from plain values instead of Airflow Connections."""
    from cht_bridge.sync.resources import Endpoint, open_resources

    r = open_resources(
        pipeline,
        cht=Endpoint(couch_url, tuple(cht_auth)),
        destination=Endpoint(receiver_url, tuple(receiver_auth)),
        state_url=state_url,
    )
    return r.client, r.destination, r.store, r.mapper


def run_once(pipeline: Any, couch_url: str, cht_auth, receiver_url: str, receiver_auth, state_url: str) -> Any:
    """One whole run of ``pipeline`` with what ``open_run`` opens, closed afterwards."""
    from cht_bridge.sync import run_pipeline

    client, destination, store, mapper = open_run(pipeline, couch_url, cht_auth, receiver_url, receiver_auth, state_url)
    try:
        return run_pipeline(pipeline, client=client, destination=destination, store=store, mapper=mapper)
    finally:
        mapper.close()
        destination.close()
        store.close()


def child_main(argv: list[str]) -> int:
    """One pipeline run. stdin: ``cht_user:password`` then ``receiver_user:password``."""
    from cht_bridge.config import parse_pipeline

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, type=Path, help="the pipeline as JSON")
    parser.add_argument("--couch", required=True)
    parser.add_argument("--receiver", required=True)
    parser.add_argument("--state", required=True, help="SQLAlchemy URL of the state store")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(threadName)s %(message)s")
    cht_auth = tuple(sys.stdin.readline().rstrip("\n").split(":", 1))
    receiver_auth = tuple(sys.stdin.readline().rstrip("\n").split(":", 1))
    pipeline = parse_pipeline(json.loads(args.config.read_text()), file=str(args.config))
    summary = run_once(pipeline, args.couch, cht_auth, args.receiver, receiver_auth, args.state)
    print(json.dumps(summary.as_dict()), flush=True)
    return 0


def start_worker(config: Path, couch_url: str, cht_auth, receiver, state_url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    cmd = [sys.executable, "-m", "tests.integration.test_crash_safety", "--child", "--config", str(config)]
    cmd += ["--couch", couch_url, "--receiver", receiver.url, "--state", state_url]
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
    creds = receiver.credentials
    proc.stdin.write(f"{cht_auth[0]}:{cht_auth[1]}\n{creds['username']}:{creds['password']}\n")
    proc.stdin.close()
    return proc


def finish_worker(proc: subprocess.Popen, log: Path, context: str) -> dict:
    with proc.stdout:  # stdin is closed already: communicate() would try to flush it
        out = proc.stdout.read()
    proc.wait(timeout=120)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{context}: worker failed ({proc.returncode}); log:\n{text[-4000:]}"
    assert "Traceback" not in text, f"{context}: traceback in the worker log:\n{text[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


# -- what CHT holds and what the receiver stored ---------------------------------------------------


def relevant(docs: list[dict]) -> dict[str, dict]:
    return {d["_id"]: d for d in docs if d.get("type") == "data_record" and d.get("form") and not d.get("_deleted")}


def stored(receiver) -> list[dict]:
    from tests.conftest import received

    return received(receiver)


def missing(expected: dict[str, dict], items: list[dict]) -> set[str]:
    """Relevant docs whose current revision is not at the receiver."""
    have = {(i["payload"]["report_id"], i["payload"]["rev"]) for i in items}
    return {doc_id for doc_id, doc in expected.items() if (doc_id, doc["_rev"]) not in have}


def changed_since(db_url: str, auth: tuple[str, str], since: Any) -> set[str]:
    """Ids of the documents whose latest change comes after ``since``."""
    param = 0 if since is None else (since if isinstance(since, (str, int)) else json.dumps(since))
    r = requests.get(f"{db_url}/_changes", params={"since": param}, auth=auth, timeout=60)
    r.raise_for_status()
    return {row["id"] for row in r.json()["results"]}


def last_seq(db_url: str, auth: tuple[str, str]) -> Any:
    r = requests.get(f"{db_url}/_changes", params={"since": "now"}, auth=auth, timeout=60)
    r.raise_for_status()
    return r.json()["last_seq"]


def not_delivered(store, name: str, docs: dict[str, dict]) -> list[tuple]:
    """Docs whose ledger row is missing, not ``delivered``, or of another revision (one query)."""
    from sqlalchemy import select

    from cht_bridge.state.store import deliveries

    c = deliveries.c
    with store.engine.connect() as conn:
        rows = {
            r.doc_id: (r.status, r.doc_rev)
            for r in conn.execute(select(c.doc_id, c.status, c.doc_rev).where(c.pipeline == name))
        }
    return [(d, rows.get(d)) for d, doc in docs.items() if rows.get(d) != ("delivered", doc["_rev"])]


def assert_checkpoint_not_past_undelivered(store, name, db_url, auth, expected, items, context) -> int:
    """Every relevant doc whose latest change is at or before the checkpoint is delivered (ledger,
    at its current revision) and stored at the receiver. Returns how many docs that covers."""
    checkpoint = store.checkpoint(name)
    after = changed_since(db_url, auth, checkpoint)
    passed = [doc_id for doc_id in expected if doc_id not in after]
    not_stored = missing({d: expected[d] for d in passed}, items)
    assert not not_stored, (
        f"{context}: checkpoint {checkpoint} is past {len(not_stored)} docs the receiver never got, "
        f"e.g. {sorted(not_stored)[:5]}"
    )
    wrong = not_delivered(store, name, {d: expected[d] for d in passed})
    assert not wrong, (
        f"{context}: checkpoint {checkpoint} is past {len(wrong)} docs not delivered in the ledger: {wrong[:5]}"
    )
    return len(passed)


def assert_exactly_once(store, name, expected: dict[str, dict], items: list[dict], context: str) -> None:
    lost = missing(expected, items)
    assert not lost, f"{context}: {len(lost)} relevant docs never arrived at their current revision: {sorted(lost)[:5]}"
    payloads = Counter((i["payload"]["report_id"], json.dumps(i["payload"], sort_keys=True)) for i in items)
    twice = [(doc_id, n) for (doc_id, _), n in payloads.items() if n > 1]
    assert not twice, f"{context}: payloads stored more than once at the receiver: {twice[:5]}"
    revisions = Counter((i["payload"]["report_id"], i["payload"]["rev"]) for i in items)
    twice = [(key, n) for key, n in revisions.items() if n > 1]
    assert not twice, f"{context}: a revision stored more than once (with different payloads): {twice[:5]}"
    strangers = {i["payload"]["report_id"] for i in items} - set(expected)
    assert not strangers, f"{context}: items of docs that are not relevant reports: {sorted(strangers)[:5]}"
    wrong = not_delivered(store, name, expected)
    assert not wrong, f"{context}: ledger rows not delivered at the current revision: {wrong[:5]}"


def integrity(sqlite_path: Path) -> str:
    with closing(sqlite3.connect(sqlite_path)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# -- CHT edits between kills -------------------------------------------------------------------------


def change_cht(cht, rng: random.Random, iteration: int, templates: list[dict]) -> None:
    """New relevant reports, edits of existing ones (each edit is a new payload), and changes
    of documents that are not relevant, all in one CHT write."""
    docs = cht.all_docs()
    reports = sorted(relevant(docs).values(), key=lambda d: d["_id"])
    people = sorted((d for d in docs if d.get("type") == "person"), key=lambda d: d["_id"])
    new = []
    for j in range(NEW_PER_ITERATION):
        doc = copy.deepcopy(rng.choice(templates))
        doc.pop("_rev", None)
        doc["_id"] = f"crash-{iteration:02d}-{j:03d}-{rng.getrandbits(32):08x}"
        doc["fields"]["crash_round"] = iteration
        new.append(doc)
    edits = []
    for doc in rng.sample(reports, EDITS_PER_ITERATION):
        doc = copy.deepcopy(doc)
        doc["fields"]["crash_round"] = iteration
        edits.append(doc)
    unrelated = []
    for doc in rng.sample(people, min(3, len(people))):
        doc = copy.deepcopy(doc)
        doc["crash_round"] = iteration  # a person is not a report: read, not sent
        unrelated.append(doc)
    docs = new + edits + unrelated
    rng.shuffle(docs)
    rows = cht.put(*docs)
    assert not [r for r in rows if "error" in r], rows


# -- 1. SIGKILL in the middle of a run ---------------------------------------------------------------


def kill_point(rng: random.Random, mode: str, todo: int) -> tuple[int, float]:
    """The request count after which to kill, and a further sleep below one request's delay.

    The count stays low enough that the run cannot have stored every doc of ``todo`` by then,
    even with every request in flight stored after the kill.
    """
    # Requests in flight, requests counted during the sleep, and a margin of a quarter for a
    # slow poll on a busy machine; no later than a second or so into the run, to keep the test fast.
    if mode == "batch":
        highest = min(todo // BATCH - 3, (3 * todo) // (4 * BATCH), 16)
    else:
        highest = min(todo - 2 * CONCURRENCY - 1, (3 * todo) // 4, 80)
    assert highest >= 1, f"too little work to kill in the middle of it: {todo} docs"
    return rng.randint(1, highest), rng.uniform(0, DELAY[mode])


def kill_after(proc: subprocess.Popen, receiver, before: int, at: int, sleep: float, log: Path, context: str) -> int:
    """SIGKILL the worker once the receiver has seen ``at`` requests of this run (plus ``sleep``)."""
    deadline = time.monotonic() + 60
    while receiver.stats()["requests"] - before < at:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"{context}: the worker ended (code {proc.returncode}) before request {at}; log:\n{tail}")
        assert time.monotonic() < deadline, f"{context}: the worker never reached request {at}"
        time.sleep(0.002)
    time.sleep(sleep)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"{context}: the worker ended by itself (code {proc.returncode})"
    return receiver.stats()["requests"] - before


@pytest.fixture
def state(tmp_path):
    """A SQLite state store file: its URL for the workers, and a store to read it."""
    from cht_bridge.state import StateStore

    path = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{path}")  # the tables exist before the first worker starts
    yield store, path
    store.close()


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_worker_killed_mid_run_ten_times_loses_nothing_and_stores_nothing_twice(cht, receiver, state, tmp_path, mode):
    store, state_path = state
    state_url = store.url
    rng = random.Random(f"{SEED}:{mode}")
    cht.seed(200, seed=SEED % 1000)
    templates = list(relevant(cht.all_docs()).values())
    name = f"crash_{mode}_{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(pipeline_config(name, cht.db, mode, cht_conn="cht_crash", receiver_conn="rcv_crash")))
    receiver.configure(delay=DELAY[mode])
    started = time.monotonic()
    table = []

    for iteration in range(ITERATIONS):
        context = f"[seed {SEED}, mode {mode}, iteration {iteration}]"
        iteration_started = time.monotonic()
        change_cht(cht, rng, iteration, templates)
        expected = relevant(cht.all_docs())
        items = stored(receiver)
        todo = len(missing(expected, items))
        at, sleep = kill_point(rng, mode, todo)
        before = receiver.stats()
        checkpoint_before = store.checkpoint(name)
        log = tmp_path / f"worker-{iteration:02d}.log"
        proc = start_worker(config, cht.url, cht.user, receiver, state_url, log)
        spawned = time.monotonic()
        seen = kill_after(proc, receiver, before["requests"], at, sleep, log, context)
        killed = time.monotonic()
        time.sleep(2 * DELAY[mode] + 0.05)  # requests the dead worker left in flight finish at the receiver
        after = receiver.stats()
        items = stored(receiver)
        left = missing(expected, items)
        checkpoint = store.checkpoint(name)

        # It really died in the middle: it had sent requests, not every doc had arrived, and the
        # checkpoint had not reached the end of the feed.
        assert seen >= at >= 1, context
        assert left, f"{context}: every doc had arrived before the kill ({todo} to do, kill after request {at})"
        assert checkpoint != cht.last_seq(), f"{context}: the checkpoint reached the end before the kill"
        assert integrity(state_path) == "ok", context
        covered = assert_checkpoint_not_past_undelivered(store, name, cht.db_url, cht.admin, expected, items, context)
        table.append(
            {
                "iteration": iteration,
                "todo": todo,
                "kill_after_request": at,
                "sleep_ms": round(sleep * 1000, 1),
                "requests": after["requests"] - before["requests"],
                "stored": after["items"] - before["items"],
                "dropped": after["duplicates"] - before["duplicates"],
                "left": len(left),
                "checkpoint_moved": checkpoint != checkpoint_before,
                "passed_docs": covered,
                "to_kill_s": round(killed - spawned, 2),
                "seconds": round(time.monotonic() - iteration_started, 2),
            }
        )

    # Not vacuous: kills landed after new items were stored in most iterations, and the re-sends
    # of what a dead worker had delivered without recording it did happen.
    assert sum(1 for row in table if row["stored"] > 0) >= ITERATIONS // 2, table
    assert sum(1 for row in table if row["checkpoint_moved"]) >= ITERATIONS // 2, table

    receiver.configure(delay=0)
    context = f"[seed {SEED}, mode {mode}, final run]"
    before = receiver.stats()
    log = tmp_path / "worker-final.log"
    summary = finish_worker(start_worker(config, cht.url, cht.user, receiver, state_url, log), log, context)
    assert summary["failed"] == 0 and summary["dead_lettered"] == 0, (context, summary)
    expected = relevant(cht.all_docs())
    items = stored(receiver)
    assert_exactly_once(store, name, expected, items, context)
    assert store.checkpoint(name) == cht.last_seq(), context
    assert store.counts(name) == {"delivered": len(expected)}, context
    stats = receiver.stats()
    dropped = stats["duplicates"]
    final = {"sent": summary["sent"], "stored": stats["items"] - before["items"]}
    final["dropped"] = stats["duplicates"] - before["duplicates"]
    assert summary["sent"] == final["stored"] + final["dropped"], (context, summary, final)

    # And a run after that has nothing to send.
    log = tmp_path / "worker-idle.log"
    idle = finish_worker(start_worker(config, cht.url, cht.user, receiver, state_url, log), log, context)
    assert idle["sent"] == 0 and receiver.stats()["requests"] == stats["requests"], (context, idle)

    print(f"\n{context}: {len(expected)} relevant docs, {len(items)} items stored, {dropped} re-sends dropped by key")
    for row in table:
        print("  ", json.dumps(row))
    print(f"   final run: {json.dumps(final)}; {time.monotonic() - started:.1f} s")
    # Not vacuous either: dead workers had left items stored but not recorded, and they were sent again.
    assert dropped > 0, f"{context}: no re-send at all: {table}"


# -- 2. CouchDB restarted in the middle of a run -------------------------------------------------------


@pytest.fixture
def leveldb_couch(tmp_path):
    """A CouchDB-protocol server of this test only, keeping its data across a restart."""
    from standins.couchdb import LocalCouch, create_user, set_security
    from standins.seed import seed

    couch = LocalCouch(tmp_path / "couch", in_memory=False).start()
    try:
        seed(couch.url, couch.admin_auth, 300, seed=SEED, db="medic")
        user = ("bridge_online", uuid.uuid4().hex)
        create_user(couch.url, couch.admin_auth, user[0], user[1], ["mm-online"])
        set_security(couch.url, couch.admin_auth, "medic", member_names=[user[0]])
        couch.user = user
        yield couch
    finally:
        couch.stop()


def all_docs(db_url: str, auth: tuple[str, str]) -> list[dict]:
    r = requests.get(f"{db_url}/_all_docs", params={"include_docs": "true"}, auth=auth, timeout=60)
    r.raise_for_status()
    return [row["doc"] for row in r.json()["rows"] if not row["id"].startswith("_design/")]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("outage", ["restart", "down"])
def test_couchdb_restarted_mid_run_fails_cleanly_or_retries_and_the_next_run_resumes(
    leveldb_couch, state, tmp_path, outage, caplog
):
    """``restart``: the server is restarted (well inside the client's read retries); ``down``:
    it is stopped until the run gave up (a client with one quick retry), then started again."""
    from cht_bridge.cht import CouchClient
    from cht_bridge.config import parse_pipeline
    from cht_bridge.errors import SourceError
    from cht_bridge.http.retry import RetryPolicy
    from cht_bridge.sync import run_pipeline
    from standins.receiver import Receiver

    couch = leveldb_couch
    rng = random.Random(f"{SEED}:{outage}")
    db_url, admin = f"{couch.url}/medic", couch.admin_auth
    name = f"restart_{outage}_{uuid.uuid4().hex[:8]}"
    raw = pipeline_config(name, "medic", "single", cht_conn="cht_restart", receiver_conn="rcv_restart")
    pipeline = parse_pipeline(raw, file=f"{name}.yaml")
    creds = {"username": "bridge", "password": uuid.uuid4().hex}
    receiver = Receiver(tmp_path / "receiver", credentials=creds, delay=0.03).start()
    receiver.credentials = creds
    store, _ = state
    state_url = store.url
    context = f"[seed {SEED}, outage {outage}]"
    try:
        client, destination, store1, mapper = open_run(
            pipeline, couch.url, couch.user, receiver.url, (creds["username"], creds["password"]), state_url
        )
        if outage == "down":  # one quick retry, so the run gives up while the server is down
            client = CouchClient(
                couch.url,
                "medic",
                couch.user,
                conn_id=pipeline.cht_conn_id,
                retry=RetryPolicy(retries=1, backoff_s=0.05, max_backoff_s=0.05),
            )
        outcome: dict[str, Any] = {}

        def first_run() -> None:
            try:
                outcome["summary"] = run_pipeline(
                    pipeline, client=client, destination=destination, store=store1, mapper=mapper
                )
            except BaseException as exc:  # noqa: BLE001 - the assertions below say which are fine
                outcome["error"] = exc

        expected = relevant(all_docs(db_url, admin))
        at = rng.randint(10, len(expected) // 3)  # single mode: a request per doc
        runner = threading.Thread(target=first_run, name="first-run")
        started = time.monotonic()
        runner.start()
        while receiver.stats()["requests"] < at and runner.is_alive():
            time.sleep(0.005)
        assert runner.is_alive(), f"{context}: the run ended before request {at}: {outcome}"
        restarted_at = receiver.stats()["requests"]
        if outage == "restart":
            couch.restart()
            assert runner.is_alive(), f"{context}: the run did not outlast the restart: {outcome}"
            runner.join(timeout=120)
        else:
            couch.stop()
            runner.join(timeout=120)
            couch.start()
        assert not runner.is_alive(), f"{context}: the run hangs after the restart"
        mapper.close()
        destination.close()
        store1.close()
        first_seconds = time.monotonic() - started

        error = outcome.get("error")
        read_retries = sum(
            1 for r in caplog.records if r.name == "cht_bridge.http.read" and "trying again" in r.getMessage()
        )
        if outage == "down":
            assert error is not None, f"{context}: the run finished although CouchDB was down: {outcome}"
        if outage == "restart":  # the restart did interrupt a read: the client retried through it
            assert read_retries >= 1 or error is not None, f"{context}: no read failed during the restart"
        if error is not None:
            assert type(error) is SourceError, f"{context}: unexpected {type(error).__name__}: {error!r}"
            assert error.status is None and "CHT connection 'cht_restart'" in str(error), str(error)
            assert "ConnectionError" in str(error), str(error)
            # raised by the client itself once its retries were spent, not wrapped around something else
            assert traceback.extract_tb(error.__traceback__)[-1].name == "request_text", error  # the shared read loop
            assert error.__context__ is None and error.__cause__ is None, repr(error.__context__)
        else:
            assert outcome["summary"].failed == 0, (context, outcome["summary"])
        unexpected = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not SourceError]
        assert not unexpected, f"{context}: tracebacks logged: {[r.getMessage() for r in unexpected]}"

        # The checkpoint never moved past a doc that had not arrived.
        items = stored(receiver)
        checkpoint = store.checkpoint(name)
        covered = assert_checkpoint_not_past_undelivered(store, name, db_url, admin, expected, items, context)
        if error is not None:
            assert missing(expected, items), f"{context}: the failed run had delivered everything"
            assert checkpoint != last_seq(db_url, admin), f"{context}: a failed run moved the checkpoint to the end"

        # New reports while the server was away, then a normal run: it resumes from the checkpoint.
        template = copy.deepcopy(next(iter(expected.values())))
        template.pop("_rev")
        new = [{**template, "_id": f"after-restart-{i:02d}"} for i in range(10)]
        r = requests.post(f"{db_url}/_bulk_docs", json={"docs": new}, auth=admin, timeout=30)
        r.raise_for_status()
        expected = relevant(all_docs(db_url, admin))
        pending = changed_since(db_url, admin, checkpoint)
        second = run_once(
            pipeline, couch.url, couch.user, receiver.url, (creds["username"], creds["password"]), state_url
        )
        assert second.start_seq == checkpoint, context
        assert second.read == len(pending), (context, second.read, len(pending))
        assert second.failed == 0 and second.dead_lettered == 0, (context, second)

        items = stored(receiver)
        assert_exactly_once(store, name, expected, items, context)
        assert receiver.stats()["duplicates"] == 0, f"{context}: a doc was sent twice: {receiver.stats()}"
        assert len(items) == len(expected), context
        assert store.checkpoint(name) == last_seq(db_url, admin), context
        print(
            f"\n{context}: restarted after {restarted_at} requests; first run "
            f"{'failed: ' + str(error) if error else 'succeeded'} in {first_seconds:.1f} s after {read_retries} "
            "read retries, "
            f"{covered} docs behind its checkpoint, all delivered; "
            f"second run read {second.read} changes, sent {second.sent}"
        )
    finally:
        receiver.stop()


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    sys.exit(child_main(sys.argv[2:]))
