"""Send slots (state/send_slots.py) on the SQLite store: the limit holds across writers, a dead
holder's lease comes back, waiting is bounded and fair, and an existing store gains the tables."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from cht_bridge.errors import DestinationBusyError
from cht_bridge.state import StateStore
from cht_bridge.state.send_slots import SendSlots

ROOT = Path(__file__).resolve().parents[3]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_more_writers_than_slots_never_send_more_than_the_slots_at_once(tmp_path):
    url = _url(tmp_path)
    SendSlots(StateStore(url).engine, "emr", 2)  # the store and its tables, made once (as a deployment does)
    lock, now, peak, done = threading.Lock(), [0], [0], []

    def writer() -> None:
        slots = SendSlots(StateStore(url).engine, "emr", 2)  # a store of its own, as a worker has
        for _ in range(5):
            with slots.held():
                with lock:
                    now[0] += 1
                    peak[0] = max(peak[0], now[0])
                time.sleep(0.02)
                with lock:
                    now[0] -= 1
        done.append(1)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 6 and peak[0] == 2  # every send happened, two at a time at most (and two used)
    assert SendSlots(StateStore(url).engine, "emr", 2).holders() == 0


def test_a_sigkilled_holders_slot_comes_back_when_its_lease_runs_out(tmp_path):
    url = _url(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from cht_bridge.state import StateStore\n"
            "from cht_bridge.state.send_slots import SendSlots\n"
            f"slots = SendSlots(StateStore({url!r}).engine, 'emr', 1, lease_s=1.5)\n"
            "with slots.held():\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n"
        )],
        stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        slots = SendSlots(StateStore(url).engine, "emr", 1, wait_s=0.3)
        with pytest.raises(DestinationBusyError, match="'emr': its 1 send slots stayed taken"), slots.held():
            pass
        time.sleep(2)  # the holder renews while alive: still taken after its lease time
        assert slots.holders() == 1
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        with SendSlots(StateStore(url).engine, "emr", 1, wait_s=10).held() as number:
            waited = time.monotonic() - started
        assert number == 0 and waited < 3  # at most one lease (1.5 s) after the kill
    finally:
        holder.kill()
        holder.wait(10)


def test_waiting_is_bounded_and_a_waiter_that_gives_up_leaves_the_queue(tmp_path):
    store = StateStore(_url(tmp_path))
    first, second = SendSlots(store.engine, "dhis2", 1), SendSlots(store.engine, "dhis2", 1, wait_s=0.3)
    with first.held():
        started = time.monotonic()
        with pytest.raises(DestinationBusyError), second.held():
            pass
        assert 0.3 <= time.monotonic() - started < 3
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cht_bridge_send_waiter").scalar() == 0
    with second.held():  # free again
        pass


def test_a_sender_asking_again_goes_behind_the_one_waiting(tmp_path):
    store = StateStore(_url(tmp_path))
    fast, patient = SendSlots(store.engine, "emr", 1), SendSlots(store.engine, "emr", 1)
    order: list[str] = []
    waiting = threading.Event()

    def wait_for_it() -> None:
        waiting.set()
        with patient.held():
            order.append("patient")

    with fast.held():
        t = threading.Thread(target=wait_for_it)
        t.start()
        waiting.wait(5)
        time.sleep(0.3)  # the patient one is in the queue
    with fast.held():  # given back and asked for again at once: the patient one goes first
        order.append("fast")
    t.join(10)
    assert order == ["patient", "fast"]


def test_an_existing_store_gains_the_tables_on_first_use(tmp_path):
    store = StateStore(_url(tmp_path))  # a store as an older version left it
    assert "cht_bridge_send_slot" not in inspect(store.engine).get_table_names()
    SendSlots(store.engine, "emr", 3)
    assert {"cht_bridge_send_slot", "cht_bridge_send_waiter"} <= set(inspect(store.engine).get_table_names())
    StateStore(_url(tmp_path)).close()  # and the store still opens as before
    with pytest.raises(ValueError, match="not a positive number"):
        SendSlots(store.engine, "emr", 0)


def test_a_database_locked_by_another_connection_is_waited_out_within_the_wait(tmp_path):
    """SQLite's "database is locked" (here after 0.1 s) is one more try, not a traceback: the slot is
    taken once the other connection lets go, within the bounded wait."""
    import sqlite3

    from sqlalchemy import create_engine

    engine = create_engine(_url(tmp_path), connect_args={"timeout": 0.1})
    slots = SendSlots(engine, "emr", 1, wait_s=20)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the file
    letting_go = threading.Timer(1.5, lambda: other.execute("COMMIT"))
    letting_go.start()
    started = time.monotonic()
    try:
        with slots.held() as slot:
            waited = time.monotonic() - started
            assert slot == 0 and slots.holders() == 1
    finally:
        letting_go.join()
        other.close()
    assert 1.4 <= waited < 20
    assert slots.holders() == 0
