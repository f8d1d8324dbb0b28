"""How a run's Params (or an Airflow backfill's data interval) become a backfill window, or none."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cht_bridge.operators.params import (
    backfill_window,
    parse_time,
    pipeline_params,
    replay_choice,
    reverse_params,
    string_list,
)
from cht_bridge.reverse.run import ReplayChoice

NO_INTERVAL = (None, None)


def test_a_plain_run_reads_the_changes_feed():
    defaults = {name: p.value for name, p in pipeline_params().items()}
    assert backfill_window(defaults, "manual", NO_INTERVAL) is None
    assert (
        backfill_window(defaults, "scheduled", (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)))
        is None
    )


def test_start_and_end_make_a_backfill_window_with_its_filters():
    w = backfill_window(
        {
            "start": "2026-03-01",
            "end": "2026-04-01T00:00:00+03:00",
            "forms": "pregnancy, delivery",
            "places": ["hc-1"],
            "mode": "all",
        },
        "manual",
        NO_INTERVAL,
    )
    assert w.start == datetime(2026, 3, 1, tzinfo=UTC)
    assert w.end == datetime(2026, 3, 31, 21, tzinfo=UTC)
    assert (w.forms, w.places, w.mode) == (("pregnancy", "delivery"), ("hc-1",), "all")
    assert '"forms": ["pregnancy", "delivery"]' in w.filter_json()


def test_an_airflow_backfill_run_uses_its_data_interval():
    interval = (datetime(2026, 3, 1, 10, tzinfo=UTC), datetime(2026, 3, 1, 10, 5, tzinfo=UTC))
    for run_type in ("backfill", type("RunType", (), {"value": "backfill"})()):
        w = backfill_window({"mode": "missing"}, run_type, interval)
        assert (w.start, w.end, w.mode, w.filter_json()) == (*interval, "missing", None)


def test_a_backfill_run_without_an_interval_is_refused_with_the_reason():
    at = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="schedule must be a cron expression"):
        backfill_window({}, "backfill", (at, at))


@pytest.mark.parametrize(
    "params, words",
    [
        ({"start": "2026-03-01"}, "go together"),
        ({"start": "2026-03-01", "end": "2026-02-01"}, "the window is empty"),
        ({"start": "March", "end": "2026-04-01"}, "'March' is not an ISO date"),
        ({"start": "2026-03-01", "end": "2026-04-01", "mode": "some"}, "mode must be one of"),
        ({"start": "2026-03-01", "end": "2026-04-01", "forms": [1]}, "forms"),
    ],
)
def test_contradictions_are_refused(params, words):
    with pytest.raises(ValueError, match=words):
        backfill_window(params, "manual", NO_INTERVAL)


def test_helpers():
    assert parse_time("", "x") is None and parse_time("2026-03-01T10:00:00Z", "x").hour == 10
    assert string_list(None, "x") == () and string_list("a,,b ", "x") == ("a", "b")


def test_a_reverse_run_reads_its_replay_params():
    defaults = {name: param.value for name, param in reverse_params().items()}
    assert replay_choice(defaults) is None  # the trigger form's defaults: a plain run
    choice = replay_choice({**defaults, "replay": "both", "source_ids": "c-1, c-2", "dry_run": True})
    assert choice == ReplayChoice("both", ("c-1", "c-2"), dry_run=True, give_up=False)
    assert replay_choice({"replay": "failed", "give_up": True}) == ReplayChoice("failed", give_up=True)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"replay": "dead"}, "'dead' is not one of"),
        ({"source_ids": ["c-1"]}, "set 'replay' too"),
        ({"replay": "none", "dry_run": True}, "set 'replay' too"),
        ({"give_up": True}, "set 'replay' too"),
        ({"replay": "failed", "source_ids": [1]}, "source_ids"),
    ],
)
def test_replay_params_that_contradict_each_other_are_refused(params, words):
    with pytest.raises(ValueError, match=words):
        replay_choice(params)
