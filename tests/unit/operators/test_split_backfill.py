"""cht_bridge_backfill: how a window is cut into parts, and how the parts' counts add up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cht_bridge.errors import ParamError
from cht_bridge.operators.backfill import MAX_PARTS, add_up, split_window


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_twelve_months_make_twelve_calendar_months_without_gap_or_overlap():
    parts = split_window(at(2025, 11, 1), at(2026, 11, 1))
    assert len(parts) == 12
    assert parts[0] == (at(2025, 11, 1), at(2025, 12, 1)) and parts[2] == (at(2026, 1, 1), at(2026, 2, 1))
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    assert parts[-1][1] == at(2026, 11, 1)


def test_a_window_starting_mid_month_ends_its_first_part_at_the_next_month_and_keeps_its_end():
    parts = split_window(at(2026, 1, 15, 6), at(2026, 3, 10), months=1)
    assert parts == [
        (at(2026, 1, 15, 6), at(2026, 2, 1)),
        (at(2026, 2, 1), at(2026, 3, 1)),
        (at(2026, 3, 1), at(2026, 3, 10)),
    ]


def test_parts_of_several_months_or_of_days():
    assert len(split_window(at(2025, 11, 1), at(2026, 11, 1), months=3)) == 4
    days = split_window(at(2026, 1, 1), at(2026, 1, 31), days=7)
    assert [b - a for a, b in days][:4] == [days[0][1] - days[0][0]] * 4 and days[-1][1] == at(2026, 1, 31)
    assert len(days) == 5


def test_an_empty_window_or_too_many_parts_is_refused_plainly():
    with pytest.raises(ParamError, match="window is empty"):
        split_window(at(2026, 2, 1), at(2026, 1, 1))
    with pytest.raises(ParamError, match=f"more than {MAX_PARTS} parts"):
        split_window(at(2000, 1, 1), at(2026, 1, 1), days=1)
    with pytest.raises(ParamError, match="at least 1"):
        split_window(at(2026, 1, 1), at(2026, 2, 1), months=0)


def test_the_summary_adds_the_parts_up():
    parts = [
        {"pipeline": "p", "read": 10, "relevant": 4, "sent": 3, "failed": 1, "seconds": 1.5, "lag_seconds": 50.0},
        {"pipeline": "p", "read": 5, "relevant": 2, "sent": 2, "failed": 0, "seconds": 0.5, "lag_seconds": 20.0},
    ]
    total = add_up(parts)
    assert (total["parts"], total["read"], total["relevant"], total["sent"], total["failed"]) == (2, 15, 6, 5, 1)
    assert total["task_seconds"] == 2.0 and total["lag_seconds"] == 20.0 and total["kind"] == "backfill"
    assert add_up([])["parts"] == 0
