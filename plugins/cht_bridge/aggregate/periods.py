"""DHIS2 period identifiers (``20260105``, ``2026W2``, ``202601``, ``2026Q1``, ``2026``) and their bounds.

A period is cut at midnight in the DHIS2 instance's time zone, not UTC: a report sent at 01:00
Nairobi time on 1 February belongs to February there, though it is still January in UTC. Weeks
are ISO weeks (Monday first; week 1 holds the year's first Thursday), as DHIS2's ``Weekly`` type.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cht_bridge.errors import ParamError

PATTERNS = {
    "daily": re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    "weekly": re.compile(r"^(\d{4})W(\d{1,2})$"),
    "monthly": re.compile(r"^(\d{4})(\d{2})$"),
    "quarterly": re.compile(r"^(\d{4})Q([1-4])$"),
    "yearly": re.compile(r"^(\d{4})$"),
}


def period_of(day: date, period_type: str) -> str:
    """The period holding a local calendar day."""
    if period_type == "daily":
        return day.strftime("%Y%m%d")
    if period_type == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}W{week}"
    if period_type == "monthly":
        return day.strftime("%Y%m")
    if period_type == "quarterly":
        return f"{day.year}Q{(day.month - 1) // 3 + 1}"
    if period_type == "yearly":
        return f"{day.year}"
    raise ValueError(f"unknown period type {period_type!r}")


def first_day(period: str, period_type: str) -> date:
    """The period's first local day; a malformed period is a ``ParamError``."""
    match = PATTERNS[period_type].match(period)
    if not match:
        raise ParamError(f"'{period}' is not a {period_type} DHIS2 period")
    parts = [int(p) for p in match.groups()]
    try:
        if period_type == "daily":
            return date(*parts)
        if period_type == "weekly":
            return date.fromisocalendar(parts[0], parts[1], 1)
        if period_type == "monthly":
            return date(parts[0], parts[1], 1)
        if period_type == "quarterly":
            return date(parts[0], 3 * parts[1] - 2, 1)
        return date(parts[0], 1, 1)
    except ValueError:
        raise ParamError(f"'{period}' is not a {period_type} DHIS2 period") from None


def next_first_day(period: str, period_type: str) -> date:
    """The first local day after the period."""
    start = first_day(period, period_type)
    if period_type == "daily":
        return start + timedelta(days=1)
    if period_type == "weekly":
        return start + timedelta(days=7)
    months = {"monthly": 1, "quarterly": 3, "yearly": 12}[period_type]
    month = start.month - 1 + months
    return date(start.year + month // 12, month % 12 + 1, 1)


def bounds_ms(period: str, period_type: str, time_zone: str) -> tuple[int, int]:
    """``[start, end)`` of the period in epoch milliseconds (what ``reports_by_date`` is keyed by)."""
    zone = ZoneInfo(time_zone)
    start = datetime.combine(first_day(period, period_type), datetime.min.time(), zone)
    end = datetime.combine(next_first_day(period, period_type), datetime.min.time(), zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def periods_between(start: datetime, end: datetime, period_type: str, time_zone: str) -> list[str]:
    """Every period that overlaps ``[start, end)`` (instants; their local days decide), in order."""
    zone = ZoneInfo(time_zone)
    day = start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    out: list[str] = []
    while day <= last:
        period = period_of(day, period_type)
        out.append(period)
        day = next_first_day(period, period_type)
    return out


def windows(periods: list[str], period_type: str, time_zone: str, lag_days: int = 0) -> list[tuple[int, int]]:
    """The ``reports_by_date`` ranges that cover ``periods`` (adjacent ones merged into one read).

    ``lag_days`` widens each range backwards, for a date (a visit date) that may lie before the
    report's ``reported_date`` by up to that many days: the report is read with its period's.
    """
    spans = sorted(bounds_ms(p, period_type, time_zone) for p in set(periods))
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    lag = lag_days * 86_400_000
    return [(start, end + lag) for start, end in merged]


def local_periods(values: Any, period_type: str, time_zone: str) -> Any:
    """A pandas Series of dates (epoch ms numbers, or ISO texts) as DHIS2 periods; unreadable ones are None.

    A date-only text (``2026-01-05``) is that local day; a number or a time-stamped text is an
    instant, converted to the instance's time zone before its day is taken.
    """
    import pandas as pd

    series = pd.Series(values, dtype="object")
    numeric = pd.to_numeric(series, errors="coerce")
    instants = pd.to_datetime(numeric, unit="ms", utc=True, errors="coerce")
    texts = series.where(numeric.isna() & series.map(lambda v: isinstance(v, str)))
    if texts.notna().any():
        date_only = texts.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).astype(bool)
        parsed = pd.to_datetime(texts.where(~date_only), utc=True, errors="coerce", format="ISO8601")
        instants = instants.fillna(parsed)
        days = pd.to_datetime(texts.where(date_only), errors="coerce", format="%Y-%m-%d")
    else:
        days = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
    local = instants.dt.tz_convert(time_zone).dt.tz_localize(None).dt.normalize()
    local = local.fillna(days)
    return _format(local, period_type)


def _format(local: Any, period_type: str) -> Any:
    import pandas as pd

    valid = local.notna()
    out = pd.Series([None] * len(local), index=local.index, dtype="object")
    if not valid.any():
        return out
    d = local[valid]
    if period_type == "daily":
        text = d.dt.strftime("%Y%m%d")
    elif period_type == "weekly":
        iso = d.dt.isocalendar()
        text = iso["year"].astype(str) + "W" + iso["week"].astype(str)
    elif period_type == "monthly":
        text = d.dt.strftime("%Y%m")
    elif period_type == "quarterly":
        text = d.dt.year.astype(str) + "Q" + d.dt.quarter.astype(str)
    else:
        text = d.dt.year.astype(str)
    out[valid] = text
    return out
