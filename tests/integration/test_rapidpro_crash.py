"""A worker SIGKILLed after RapidPro accepted a flow start and before the ledger recorded it does not
start the flow twice for the same contacts.

How: each start is recorded in the state store before it is posted, with a reference of ours that
the start carries in ``params.cht_bridge_start``; the next run finds the document's key with that
record but no start uuid, looks the start up by the reference in ``GET /api/v2/flow_starts.json``,
finds it, and records it as delivered instead of posting again.

The stand-in holds its answer to a start for a long time *after* storing it
(``stall_after_start``), so the worker is killed exactly in that window. The killed worker is a
child process running this module with ``--child`` (credentials on stdin, as in
``test_crash_safety``), opening what the sync task opens (``test_rapidpro_forward.open_run``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.test_rapidpro_forward import FLOW, TOKEN, flow_start_pipeline, follow_ups, open_run, run

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def child_main(argv: list[str]) -> int:
    """One pipeline run. stdin: ``cht_user:password`` then the RapidPro token."""
    from cht_bridge.sync import run_pipeline

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--couch", required=True)
    parser.add_argument("--rapidpro", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cht_auth = tuple(sys.stdin.readline().rstrip("\n").split(":", 1))
    token = sys.stdin.readline().rstrip("\n")
    raw = json.loads(args.config.read_text())
    pipeline, client, destination, store, mapper = open_run(raw, args.couch, cht_auth, args.rapidpro, token, args.state)
    try:
        summary = run_pipeline(pipeline, client=client, destination=destination, store=store, mapper=mapper)
    finally:
        mapper.close()
        destination.close()
        store.close()
    print(json.dumps(summary.as_dict()), flush=True)
    return 0


def start_worker(config: Path, cht, rapidpro, state: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    cmd = [sys.executable, "-m", "tests.integration.test_rapidpro_crash", "--child", "--config", str(config)]
    cmd += ["--couch", cht.url, "--rapidpro", rapidpro.url, "--state", state]
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
    proc.stdin.write(f"{cht.user[0]}:{cht.user[1]}\n{TOKEN}\n")
    proc.stdin.flush()
    return proc


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.parametrize("killed_after", [1, 2])
def test_sigkill_between_the_start_and_the_ledger_write_does_not_start_the_flow_twice(cht, tmp_path, killed_after):
    from cht_bridge.state import StateStore
    from standins.rapidpro import RapidProStandIn

    state = f"sqlite:///{tmp_path / 'state.db'}"
    cht.put(*follow_ups(250))
    raw = flow_start_pipeline(f"rp_crash_{uuid.uuid4().hex[:6]}", cht.db)
    config = tmp_path / "pipeline.json"
    config.write_text(json.dumps(raw))
    with RapidProStandIn(TOKEN) as rapidpro:
        rapidpro.add_flow("Self quarantine", FLOW)
        # The first start(s) are answered at once; the next is held after RapidPro stored it.
        rapidpro.configure(stall_after_start=0.0)
        worker = start_worker(config, cht, rapidpro, state, tmp_path / "worker.log")
        try:
            if killed_after > 1:
                wait_for(lambda: len(rapidpro.starts) >= killed_after - 1)
            rapidpro.configure(stall_after_start=60.0)
            wait_for(lambda: len(rapidpro.starts) >= killed_after)
            time.sleep(0.2)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        assert worker.returncode == -signal.SIGKILL
        rapidpro.configure(stall_after_start=0.0)
        accepted_before = len(rapidpro.starts)

        summary = run(raw, cht, rapidpro, state)

        starts = rapidpro.starts
        per_urn = Counter(u for s in starts for u in s["urns"])
        assert len(per_urn) == 250, (killed_after, accepted_before, len(per_urn))
        assert max(per_urn.values()) == 1, f"started twice: {[u for u, n in per_urn.items() if n > 1][:3]}"
        assert len(starts) == 3
        lookups = [r for r in rapidpro.requests if r[0] == "GET" and r[1] == "/api/v2/flow_starts.json"]
        assert lookups, "the start without a recorded uuid was looked up"
        store = StateStore(state)
        assert store.counts(raw["name"]) == {"delivered": 250}
        uuids = {store.ledger(raw["name"], f"trace-{i:04d}")["destination_id"] for i in range(250)}
        assert uuids == {s["uuid"] for s in starts}
        store.close()
        assert summary["failed"] == 0

        again = run(raw, cht, rapidpro, state)
        assert again["sent"] == 0 and len(rapidpro.starts) == 3


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(child_main(sys.argv[2:]))
