"""A DHIS2 tracker pipeline SIGKILLed in the middle of a run, again and again, creates no duplicate
event: the run after each kill sends what the dead worker had sent without recording it, and
DHIS2 (the stand-in) takes it as an update of the same event, because every UID derives from the
CHT report's ``_id``.

The killed worker is ``tests/integration/test_crash_safety.py``'s child process (the product's own
run code, credentials on stdin); the DHIS2 stand-in lives in this process, so it outlives each
worker and keeps serving the requests a dead worker left in flight. Kill points come from
``random.Random`` seeded with ``CHT_BRIDGE_CRASH_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid

import pytest

from cht_bridge.destinations.dhis2 import uids
from cht_bridge.state import StateStore
from tests.integration.aggregate_setup import facilities, write_table
from tests.integration.test_crash_safety import change_cht, finish_worker, start_worker
from tests.integration.test_dhis2_tracker import PROGRAM, event_config, reports, stand_in

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("CHT_BRIDGE_CRASH_SEED", "5417"))
KILLS = 4
DELAY = 0.04  # stand-in seconds per tracker request: a run lasts long enough to kill in its middle


def kill_after(proc, dhis2, before: int, at: int, log, context: str) -> None:
    """SIGKILL the worker once the stand-in has seen ``at`` tracker posts of this run."""
    deadline = time.monotonic() + 60
    while dhis2.stats()["data_requests"] - before < at:
        if proc.poll() is not None:
            pytest.fail(
                f"{context}: the worker ended (code {proc.returncode}) before post {at}:\n{log.read_text()[-3000:]}"
            )
        assert time.monotonic() < deadline, f"{context}: the worker never reached post {at}"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, f"{context}: the worker ended by itself"


def test_a_tracker_worker_killed_mid_run_and_run_again_creates_no_duplicate_event(cht, tmp_path):
    rng = random.Random(f"{SEED}:dhis2-tracker")
    cht.seed(400, seed=SEED % 1000)
    docs = cht.all_docs()
    table = write_table(tmp_path / "org_units.csv", facilities(docs))
    templates = list(reports(docs, "assessment").values())
    dhis2 = stand_in(facilities(docs))
    state_path = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{state_path}")
    name = f"tracker_crash_{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.json"
    pipeline = event_config(name, cht.db, table)
    pipeline["destination"]["batch_size"] = 5
    pipeline["batch_size"] = 20
    config.write_text(json.dumps(pipeline))
    rows = []
    try:
        dhis2.configure(delay=DELAY)
        for iteration in range(KILLS):
            context = f"[seed {SEED}, iteration {iteration}]"
            if iteration:
                change_cht(cht, rng, iteration, templates)  # new reports and edits between kills
            expected = reports(cht.all_docs(), "assessment")
            before = dhis2.stats()
            todo = len(expected) - before["events"]
            at = rng.randint(2, max(2, min(12, todo // 5 - 3)))
            log = tmp_path / f"worker-{iteration}.log"
            proc = start_worker(config, cht.url, cht.user, dhis2, store.url, log)
            kill_after(proc, dhis2, before["data_requests"], at, log, context)
            time.sleep(2 * DELAY + 0.05)  # what the dead worker left in flight finishes at the stand-in
            after = dhis2.stats()
            assert after["events"] < len(expected), f"{context}: every event had arrived before the kill"
            rows.append({"iteration": iteration, "todo": todo, "kill_after_post": at,
                         "created": after["events_created"] - before["events_created"],
                         "updated": after["events_updated"] - before["events_updated"]})  # fmt: skip

        dhis2.configure(delay=0)
        log = tmp_path / "worker-final.log"
        summary = finish_worker(start_worker(config, cht.url, cht.user, dhis2, store.url, log), log, "[final run]")
        assert summary["failed"] == 0 and summary["dead_lettered"] == 0, summary
        expected = reports(cht.all_docs(), "assessment")
        stats = dhis2.stats()
        # One event per report, under the UID its _id gives, and nothing else.
        assert stats["events"] == len(expected) == stats["events_created"], (stats, rows)
        found = {e["event"] for e in dhis2.tracker.find("EVENT", {"orgUnitMode": ["ALL"]})}
        assert found == {uids.event_uid(PROGRAM, doc_id) for doc_id in expected}
        assert store.counts(name) == {"delivered": len(expected)}
        # Not vacuous: the kills landed after events were stored, and events a dead worker had sent
        # without recording them were sent again and taken as updates (edits are updates too).
        assert sum(1 for r in rows if r["created"] > 0) >= KILLS // 2, rows
        assert stats["events_updated"] > 0, rows
        idle = finish_worker(start_worker(config, cht.url, cht.user, dhis2, store.url, tmp_path / "idle.log"),
                             tmp_path / "idle.log", "[idle run]")  # fmt: skip
        assert idle["sent"] == 0 and dhis2.stats()["events"] == len(expected)
        print(f"\n[seed {SEED}] {len(expected)} reports, {stats['events_updated']} re-sent events taken as updates")
        for row in rows:
            print("  ", json.dumps(row))
    finally:
        store.close()
        dhis2.stop()
