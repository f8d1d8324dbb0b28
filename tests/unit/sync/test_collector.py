"""A sync run collects cycles less often while it moves documents, and leaves the process as it was."""

from __future__ import annotations

import gc

import pytest

from cht_bridge.sync.collector import RUN_THRESHOLD, collecting_less_often


@pytest.fixture(autouse=True)
def defaults():
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()


def test_the_threshold_is_raised_for_the_block_and_put_back_after():
    with collecting_less_often():
        assert gc.get_threshold() == (RUN_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_it_is_put_back_when_the_block_raises():
    with pytest.raises(RuntimeError), collecting_less_often():
        raise RuntimeError("the run stopped")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_nested_block_leaves_the_outer_one_to_put_it_back():
    with collecting_less_often():
        with collecting_less_often():
            assert gc.get_threshold()[0] == RUN_THRESHOLD
        assert gc.get_threshold()[0] == RUN_THRESHOLD  # still the run's: the outer block is not over
    assert gc.get_threshold() == (700, 10, 10)


def test_a_process_that_already_collects_less_often_or_not_at_all_is_left_alone():
    gc.set_threshold(50_000, 5, 5)
    with collecting_less_often():
        assert gc.get_threshold() == (50_000, 5, 5)
    assert gc.get_threshold() == (50_000, 5, 5)
    gc.set_threshold(700, 10, 10)
    gc.disable()
    with collecting_less_often():
        assert gc.get_threshold() == (700, 10, 10) and not gc.isenabled()
    assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_someone_else_set_during_the_block_is_kept():
    with collecting_less_often():
        gc.set_threshold(2_000, 10, 10)
    assert gc.get_threshold() == (2_000, 10, 10)
