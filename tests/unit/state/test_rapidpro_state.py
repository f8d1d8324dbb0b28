"""The RapidPro destination's state: a request budget over a sliding hour, and flow starts recorded
before they are posted."""

from datetime import UTC, datetime, timedelta

import pytest

from cht_bridge.state import StateStore
from cht_bridge.state.rapidpro import RapidProState

NOW = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)


@pytest.fixture
def state(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield RapidProState(store)
    store.close()


def test_the_budget_grants_up_to_its_limit_over_a_sliding_hour(state):
    assert state.take("rp:contacts", 7, 10, NOW) == 7
    assert state.take("rp:contacts", 7, 10, NOW + timedelta(minutes=1)) == 3  # only what is left
    assert state.take("rp:contacts", 1, 10, NOW + timedelta(minutes=2)) == 0
    assert state.used("rp:contacts", NOW + timedelta(minutes=2)) == 10
    assert state.take("rp:flow_starts", 5, 10, NOW) == 5  # another endpoint group, its own budget
    state.give_back("rp:contacts", 2, NOW + timedelta(minutes=1))  # reserved, not sent
    assert state.take("rp:contacts", 5, 10, NOW + timedelta(minutes=2)) == 2
    # The hour slides: the first minute's 7 count until 60 minutes later, then free up.
    assert state.take("rp:contacts", 5, 10, NOW + timedelta(minutes=59)) == 0
    assert state.take("rp:contacts", 9, 10, NOW + timedelta(minutes=60)) == 7
    assert state.used("rp:contacts", NOW + timedelta(minutes=60)) == 10


def test_a_start_is_recorded_before_it_is_posted_then_started_or_forgotten(state):
    state.intend("p", "ref-1", [("k1", "doc-1"), ("k2", "doc-2")], NOW)
    found = state.intended("p", ["k1", "k2", "k3"])
    assert set(found) == {"k1", "k2"} and found["k1"][:2] == ("ref-1", None) and found["k1"][2] == NOW
    state.started("p", "ref-1", "uuid-1")
    assert state.intended("p", ["k2"])["k2"][1] == "uuid-1"
    state.intend("p", "ref-2", [("k3", "doc-3")], NOW)
    state.forget("p", "ref-2")
    state.forget("p", "ref-1")  # a started one is never forgotten
    assert set(state.intended("p", ["k1", "k2", "k3"])) == {"k1", "k2"}
    assert state.intended("other", ["k1"]) == {}
