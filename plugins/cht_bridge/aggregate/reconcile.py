"""Does DHIS2 still hold what CHT says? Recompute an aggregate pipeline's periods and compare.

For a range of periods, each data value is computed again from CHT (the pipeline's own
aggregation, ``AggregateRun.compute``, without touching the ledger) and read from DHIS2
(``GET /api/dataValueSets`` for the pipeline's data elements or data set, the org units CHT
gives values for, the table's, and those the ledger says were delivered). Every difference is
one row of a CSV and an HTML report:

- ``missing_in_dhis2``: CHT gives a value, DHIS2 holds none (never posted, refused, deleted there);
- ``not_in_cht``: DHIS2 holds a value CHT gives no reports for (typed in by hand, or left over);
- ``different``: both hold one and they differ (edited at DHIS2 behind the pipeline's back, or a
  CHT change not posted yet).

The log and the task's XCom get the totals only (counts, no values per facility). With
``repost`` the periods that differ are posted again whole from CHT, and DHIS2's values of the
pipeline's data elements that CHT does not give are deleted there (``absent: zero``: set to 0).

Tracker pipelines (events per org unit and period) are compared by their own module; this one
takes only aggregate pipelines.
"""

from __future__ import annotations

import csv
import html
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cht_bridge.aggregate import ledger
from cht_bridge.aggregate.periods import first_day, periods_between
from cht_bridge.aggregate.post import DataValue, from_key
from cht_bridge.aggregate.run import AggregateRun, AggregateSummary, Computed

log = logging.getLogger("cht_bridge.aggregate")

#: DHIS2's "default" category option combo: the same UID on every instance, and its code.
DEFAULT_COMBOS = {"", "HllvX50cXC0", "default"}
MISSING, EXTRA, DIFFERENT = "missing_in_dhis2", "not_in_cht", "different"
COLUMNS = (
    "period",
    "org_unit",
    "data_element",
    "category_option_combo",
    "attribute_option_combo",
    "cht",
    "dhis2",
    "difference",
)

Key = tuple[str, str, str, str, str]


@dataclass
class Reconciliation:
    """Totals of one comparison (what the log and XCom carry) and where the report is."""

    pipeline: str
    periods: list[str]
    cht_values: int = 0
    dhis2_values: int = 0
    equal: int = 0
    missing_in_dhis2: int = 0
    not_in_cht: int = 0
    different: int = 0
    unplaced_reports: int = 0
    csv: str | None = None
    html: str | None = None
    reposted_periods: list[str] = field(default_factory=list)
    repost: dict[str, Any] | None = None

    @property
    def differences(self) -> int:
        return self.missing_in_dhis2 + self.not_in_cht + self.different

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "differences": self.differences}


def reconcile(
    pipeline: Any,
    *,
    client: Any,
    poster: Any,
    store: Any,
    start: datetime,
    end: datetime,
    folder: Path,
    repost: bool = False,
    logger: logging.Logger = log,
) -> Reconciliation:
    """Compare the periods of ``[start, end)`` (calendar days) between CHT and DHIS2; report, and optionally re-post."""
    s = pipeline.destination.settings
    periods = sorted(periods_between(start, end, s.period, "UTC"), key=lambda p: first_day(p, s.period))
    result = Reconciliation(pipeline.name, periods)
    run = AggregateRun(pipeline, client, poster, store, logger)
    try:
        computed = run.compute(periods, remember=False)
        result.unplaced_reports = computed.accumulator.unplaced.count
        cht = {
            _key(v.period, v.org_unit, v.data_element, v.category_option_combo, v.attribute_option_combo): v.value
            for v in computed.values
        }
        elements = sorted({r.data_element for r in s.data_values})
        org_units = {k[1] for k in cht} | {
            from_key(k).org_unit for k in ledger.delivered_values(store, pipeline.name, periods)
        }
        if run.table is not None:
            org_units |= set(run.table.org_units.values())
        dhis2: dict[Key, str] = {}
        if org_units and periods:
            for v in poster.read(periods, sorted(org_units), elements):
                if v.get("dataElement") in elements and v.get("period") in periods:
                    key = _key(
                        v["period"],
                        v.get("orgUnit", ""),
                        v["dataElement"],
                        v.get("categoryOptionCombo"),
                        v.get("attributeOptionCombo"),
                    )
                    dhis2[key] = str(v.get("value"))
        rows = _compare(cht, dhis2, result)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder.mkdir(parents=True, exist_ok=True)
        base = (
            folder / f"{pipeline.name}_{periods[0] if periods else 'none'}_{periods[-1] if periods else 'none'}_{stamp}"
        )
        result.csv = str(_write_csv(base.with_suffix(".csv"), rows))
        result.html = str(_write_html(base.with_suffix(".html"), rows, result))
        logger.info(
            "reconcile %s, %d periods (%s..%s): CHT %d values, DHIS2 %d; %d equal, %d missing in DHIS2, %d not in CHT, "
            "%d different; %d reports not counted (no org unit); report %s",
            pipeline.name, len(periods), periods[0] if periods else "-", periods[-1] if periods else "-",
            result.cht_values, result.dhis2_values, result.equal, result.missing_in_dhis2, result.not_in_cht,
            result.different, result.unplaced_reports, result.csv,
        )  # fmt: skip
        if repost and rows:
            result.reposted_periods = sorted({r[0] for r in rows}, key=lambda p: first_day(p, s.period))
            result.repost = _repost(run, result.reposted_periods, computed, rows)
        return result
    finally:
        run.close()


def _key(period: str, org_unit: str, element: str, coc: Any, aoc: Any) -> Key:
    return (
        period,
        org_unit,
        element,
        "" if coc in DEFAULT_COMBOS or coc is None else coc,
        "" if aoc in DEFAULT_COMBOS or aoc is None else aoc,
    )


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def _compare(cht: dict[Key, str], dhis2: dict[Key, str], result: Reconciliation) -> list[tuple]:
    result.cht_values, result.dhis2_values = len(cht), len(dhis2)
    rows: list[tuple] = []
    for key in sorted(set(cht) | set(dhis2)):
        ours, theirs = cht.get(key), dhis2.get(key)
        if ours is not None and theirs is not None and _same(ours, theirs):
            result.equal += 1
            continue
        kind = MISSING if theirs is None else EXTRA if ours is None else DIFFERENT
        setattr(result, kind, getattr(result, kind) + 1)
        rows.append((*key, ours, theirs, kind))
    return rows


def _write_csv(path: Path, rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(["" if c is None else c for c in row] for row in rows)
    return path


def _write_html(path: Path, rows: list[tuple], r: Reconciliation) -> Path:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    totals = (
        f"CHT {r.cht_values} values, DHIS2 {r.dhis2_values}; {r.equal} equal, {r.missing_in_dhis2} missing in DHIS2, "
        f"{r.not_in_cht} not in CHT, {r.different} different; {r.unplaced_reports} reports not counted (no org unit)"
    )
    periods = f"{r.periods[0]} to {r.periods[-1]}" if r.periods else "no period"
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>CHT ↔ DHIS2 reconciliation</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        f"</head><body><h1>{html.escape(r.pipeline)}: {html.escape(periods)}</h1><p>{html.escape(totals)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )
    return path


def _repost(run: AggregateRun, periods: list[str], computed: Computed, rows: list[tuple]) -> dict[str, Any]:
    """Post the differing periods whole from CHT; what DHIS2 holds and CHT does not give goes too."""
    chosen = set(periods)
    again = Computed([v for v in computed.values if v.period in chosen], computed.accumulator)
    extra = [DataValue(r[0], r[1], r[2], r[3] or None, r[4] or None, "") for r in rows if r[7] == EXTRA]
    summary = AggregateSummary(run.name, "reconcile", run.poster.dry_run if run.poster else False, periods=periods)
    run.post(periods, again, summary, also_absent=extra)
    return {k: summary.as_dict()[k] for k in ("values", "delivered", "conflicted", "failed", "deleted", "zeroed")}
