"""A run raises the cycle collector's first threshold and puts it back; cycles are still collected."""

from __future__ import annotations

import gc
import threading

import pytest

from cht_bridge.sync import collector
from cht_bridge.sync.collector import THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def default_threshold():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_the_threshold_is_raised_during_a_run_and_put_back_after_it_even_on_error():
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() == (THRESHOLD, 10, 10)
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_runs_put_it_back_only_when_the_last_one_ends():
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == THRESHOLD  # the second run is still going
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10) and collector._runs == 0


def test_runs_in_threads_share_it():
    inside = threading.Barrier(3)
    seen = []

    def run() -> None:
        with fewer_collections():
            inside.wait()
            seen.append(gc.get_threshold()[0])
            inside.wait()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    inside.wait()
    for t in threads:
        t.join()
    assert seen == [THRESHOLD, THRESHOLD] and gc.get_threshold() == (700, 10, 10)


def test_a_collector_switched_off_stays_off():
    gc.set_threshold(0)
    with fewer_collections():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0


def test_cycles_left_behind_during_a_run_are_still_collected():
    passes = []

    def count(phase: str, info: dict) -> None:
        if phase == "stop":
            passes.append(info["collected"])

    class Node:
        pass

    gc.callbacks.append(count)
    try:
        with fewer_collections():
            for _ in range(2 * THRESHOLD):
                a, b = Node(), Node()
                a.other, b.other = b, a  # garbage only the collector can free
    finally:
        gc.callbacks.remove(count)
    assert passes and sum(passes) > THRESHOLD
