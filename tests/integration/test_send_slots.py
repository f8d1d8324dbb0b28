"""Send slots across processes on PostgreSQL: five worker processes send through the real REST
destination behind ``sync.gate.GatedDestination`` to the receiver stand-in, whose count of paths
written at the same moment (one path per process) never exceeds the Connection's two slots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from cht_bridge.state import StateStore
from cht_bridge.state.send_slots import SendSlots

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """\
name: slots_{n}
schedule: null
start_date: 2026-01-01
cht: {{conn_id: cht_local}}
relevant_to: "true"
mapping: {{report_id: doc._id}}
destination: {{conn_id: emr_api, path: /slots/{n}, mode: batch, batch_size: 10, auth: {{type: basic}}}}
"""

SENDER = """\
import sys
from cht_bridge.config import load_pipeline
from cht_bridge.destinations.base import Delivery
from cht_bridge.state import StateStore
from cht_bridge.sync.gate import gated
from cht_bridge.sync.resources import Endpoint, _destination

file, url, login, password, state_url, n = sys.argv[1:]
pipeline = load_pipeline(file)
store = StateStore(state_url)
destination = gated(_destination(pipeline, Endpoint(url, (login, password))), store, "emr_api")
assert type(destination).__name__ == "GatedDestination"
for batch in range(4):
    deliveries = [Delivery(f"{n}-{batch}-{i}", '{"x": %d}' % i, f"key-{n}-{batch}-{i}") for i in range(3)]
    results = destination.send(deliveries)
    assert all(r.ok for r in results), [r.error for r in results]
destination.close()
print("sent", flush=True)
"""


def test_five_processes_send_two_at_a_time_and_every_payload_arrives(tmp_path, receiver, postgres_url):
    state_url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    SendSlots(StateStore(state_url).engine, "emr_api", 2)  # the tables, made once
    receiver.configure(delay=0.15)  # each write lasts long enough to overlap
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
        "CHT_BRIDGE_CONNECTION_POOLS": "true",
        "CHT_BRIDGE_POOL_SLOTS__EMR_API": "2",
    }
    login, password = receiver.credentials["username"], receiver.credentials["password"]
    procs = []
    for n in range(5):
        file = tmp_path / f"slots_{n}.yaml"
        file.write_text(PIPELINE.format(n=n))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SENDER, str(file), receiver.url, login, password, state_url, str(n)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.strip() == "sent", err[-2000:]
    stats = requests.get(f"{receiver.url}/_stats", auth=(login, password), timeout=10).json()
    assert stats["items"] == 5 * 4 * 3 and stats["duplicates"] == 0
    assert stats["max_paths_in_flight"] == 2  # contended, and never three senders at once
    assert SendSlots(StateStore(state_url).engine, "emr_api", 2).holders() == 0  # every slot given back


def test_without_the_setting_a_destination_is_not_gated(tmp_path, monkeypatch):
    from cht_bridge.errors import SettingError
    from cht_bridge.sync.gate import gated, send_slots

    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.delenv("CHT_BRIDGE_CONNECTION_POOLS", raising=False)
    marker = object()
    assert send_slots(store, "emr_api") is None and gated(marker, store, "emr_api") is marker
    monkeypatch.setenv("CHT_BRIDGE_CONNECTION_POOLS", "true")
    monkeypatch.setenv("CHT_BRIDGE_SEND_WAIT_SECONDS", "soon")
    try:
        send_slots(store, "emr_api")
    except SettingError as exc:  # a ConfigError: the task fails plainly, without retries
        assert "CHT_BRIDGE_SEND_WAIT_SECONDS: 'soon'" in str(exc)
    else:
        raise AssertionError("a wait that is not a number must be refused")


def test_each_dhis2_chunk_is_posted_inside_a_send_slot(tmp_path):
    """The aggregate poster's seam (``DataValuePoster.slot``, set by ``aggregate.run.opened``): with the
    Connection's one slot held elsewhere nothing reaches DHIS2 and the post fails as busy; freed, it posts."""
    import pytest
    import requests as http

    from cht_bridge.aggregate.post import DataValue, DataValuePoster
    from cht_bridge.errors import DestinationBusyError
    from tests.integration.aggregate_setup import CREDENTIALS, DE_PREG, held, org_uid, stand_in

    dhis2 = stand_in([{"_id": "hc-1", "name": "Health centre 1"}])
    try:
        session = http.Session()
        session.auth = (CREDENTIALS["username"], CREDENTIALS["password"])
        poster = DataValuePoster(session, dhis2.url, conn_id="dhis2_local", chunk_size=2)
        store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
        poster.slot = SendSlots(store.engine, "dhis2_local", 1, wait_s=0.3).held
        values = [DataValue(f"2026{m:02d}", org_uid("hc-1"), DE_PREG, None, None, str(m)) for m in range(1, 6)]
        with SendSlots(store.engine, "dhis2_local", 1).held(), pytest.raises(DestinationBusyError):
            poster.post(values)
        assert held(dhis2) == {}
        results = poster.post(values)
        assert (
            all(r.ok for r in results) and len(held(dhis2)) == 5 and poster.counts.requests == 5
        )  # a chunk per period
    finally:
        dhis2.stop()


def test_a_busy_slot_after_some_chunks_says_those_chunks_were_sent(tmp_path):
    """Another task takes the one slot before the third chunk: the error says 2 of 5 chunks went (they are
    in DHIS2), not that nothing was sent."""
    import pytest
    import requests as http

    from cht_bridge.aggregate.post import DataValue, DataValuePoster
    from cht_bridge.errors import DestinationBusyError
    from tests.integration.aggregate_setup import CREDENTIALS, DE_PREG, held, org_uid, stand_in

    dhis2 = stand_in([{"_id": "hc-1", "name": "Health centre 1"}])
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    other, asked = SendSlots(store.engine, "dhis2_local", 1).held(), []
    try:
        session = http.Session()
        session.auth = (CREDENTIALS["username"], CREDENTIALS["password"])
        poster = DataValuePoster(session, dhis2.url, conn_id="dhis2_local", chunk_size=2)
        ours = SendSlots(store.engine, "dhis2_local", 1, wait_s=0.3)

        def slot():
            asked.append(1)
            if len(asked) == 3:
                other.__enter__()  # another task's send takes the slot before our third chunk
            return ours.held()

        poster.slot = slot
        values = [DataValue(f"2026{m:02d}", org_uid("hc-1"), DE_PREG, None, None, str(m)) for m in range(1, 6)]
        with pytest.raises(DestinationBusyError) as busy:
            poster.post(values)
        assert busy.value.chunks_sent == 2 and len(held(dhis2)) == 2
        message = str(busy.value)
        assert "the first 2 of 5 chunks had been sent" in message and "nothing of this batch" not in message
        assert "periods stay pending" in message
    finally:
        if asked[2:]:
            other.__exit__(None, None, None)
        dhis2.stop()
