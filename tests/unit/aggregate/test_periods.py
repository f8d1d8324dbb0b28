"""DHIS2 period ids and bounds, in the instance's time zone (destinations.md §1.3)."""

from datetime import UTC, date, datetime

import pytest

from cht_bridge.aggregate.periods import bounds_ms, local_periods, period_of, periods_between, windows
from cht_bridge.errors import ParamError


@pytest.mark.parametrize(
    ("day", "kind", "expected"),
    [
        (date(2026, 1, 5), "daily", "20260105"),
        (date(2026, 1, 5), "weekly", "2026W2"),
        (date(2026, 1, 1), "weekly", "2026W1"),  # a Thursday: week 1 of 2026
        (date(2027, 1, 1), "weekly", "2026W53"),  # a Friday: still 2026's last ISO week
        (date(2026, 1, 31), "monthly", "202601"),
        (date(2026, 5, 1), "quarterly", "2026Q2"),
        (date(2026, 12, 31), "yearly", "2026"),
    ],
)
def test_period_ids_are_dhis2s(day, kind, expected):
    assert period_of(day, kind) == expected


def test_bounds_are_local_midnights():
    start, end = bounds_ms("202602", "monthly", "Africa/Nairobi")  # UTC+3
    assert datetime.fromtimestamp(start / 1000, UTC) == datetime(2026, 1, 31, 21, tzinfo=UTC)
    assert datetime.fromtimestamp(end / 1000, UTC) == datetime(2026, 2, 28, 21, tzinfo=UTC)
    start, end = bounds_ms("2026W2", "weekly", "UTC")
    assert (end - start) == 7 * 86_400_000
    assert datetime.fromtimestamp(start / 1000, UTC).date() == date(2026, 1, 5)


def test_a_malformed_period_is_refused():
    with pytest.raises(ParamError, match="not a monthly DHIS2 period"):
        bounds_ms("202613", "monthly", "UTC")


def test_dates_become_periods_in_the_instances_zone():
    late_jan_utc = int(datetime(2026, 1, 31, 22, 30, tzinfo=UTC).timestamp() * 1000)  # 01:30 on 1 Feb in Nairobi
    got = local_periods(
        [late_jan_utc, "2026-03-04", "2026-03-04T23:30:00Z", None, "garbage"], "monthly", "Africa/Nairobi"
    )
    assert list(got) == ["202602", "202603", "202603", None, None]
    assert list(local_periods([late_jan_utc], "monthly", "UTC")) == ["202601"]
    assert list(local_periods(["2026-01-05"], "weekly", "UTC")) == ["2026W2"]
    assert list(local_periods(["2026-01-05"], "quarterly", "UTC")) == ["2026Q1"]
    assert list(local_periods(["2026-01-05"], "daily", "UTC")) == ["20260105"]
    assert list(local_periods(["2026-01-05"], "yearly", "UTC")) == ["2026"]


def test_periods_of_a_window_and_merged_reads():
    got = periods_between(datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), "monthly", "UTC")
    assert got == ["202601", "202602", "202603"]
    spans = windows(["202601", "202602", "202605"], "monthly", "UTC", lag_days=1)
    assert len(spans) == 2
    assert spans[0] == (bounds_ms("202601", "monthly", "UTC")[0], bounds_ms("202602", "monthly", "UTC")[1] + 86_400_000)
