"""``destination.dhis2`` with ``kind: aggregate``: which data values a pipeline computes from CHT reports.

An aggregate pipeline does not send one payload per report: it counts the pipeline's relevant
reports per DHIS2 period and org unit, and posts whole periods as ``dataValueSets``
(``cht_bridge.aggregate``). This module checks its block at parse time (pure Python, no pandas)::

    dhis2:
      kind: aggregate
      period: monthly                 # daily | weekly (ISO) | monthly | quarterly | yearly
      time_zone: Africa/Nairobi       # the DHIS2 instance's; periods are cut at its midnight
      date: doc.reported_date         # optional: a JS expression or doc. path giving the date
      date_lag_days: 0                # how far that date may lie before reported_date (read window)
      org_unit:
        lineage: submitter            # or patient: whose lineage names the place
        level: health_center          # a place type, or a depth from the top (1 = the root)
        table: include/places/dhis2_org_units.csv   # place uuid -> org unit; or
        field: dhis2_org_unit         # a field on that place holding the org unit
      data_set: pBOMPrpg1QX           # optional
      absent: delete                  # a value gone from CHT: delete it at DHIS2, or post 0 (zero)
      chunk_size: 500                 # data values per request
      data_values:
        - name: pregnancies
          aggregate: count            # count | sum | distinct_patients
          filter: "doc.form === 'pregnancy'"
          data_element: f7n9E0hX8qk
          category_option_combo: bRowv6yZOF2   # optional (DHIS2's default combo)
          attribute_option_combo: HllvX50cXC0  # optional
          field: doc.fields.anc_visits         # sum only: the number to add up
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cht_bridge.config.kinds.dhis2 import parse_time_zone

PERIOD_TYPES = ("daily", "weekly", "monthly", "quarterly", "yearly")
AGGREGATES = ("count", "sum", "distinct_patients")
LINEAGES = ("submitter", "patient")
ABSENT = ("delete", "zero")
OWN_KEYS = {
    "period", "time_zone", "date", "date_lag_days", "org_unit", "data_set", "absent", "chunk_size", "data_values",
    "api_version",
}  # fmt: skip
ORG_UNIT_KEYS = {"lineage", "level", "table", "field"}
VALUE_KEYS = {
    "name", "aggregate", "filter", "data_element", "category_option_combo", "attribute_option_combo", "field",
}  # fmt: skip
#: An identifier in the scheme the pipeline chose (a UID, a code or a name): one line (any other
#: character, '/' too: the ledger's key of a data value is a JSON array, ``post.value_key``).
ID_RE = re.compile(r"^[^\x00-\x1f]{1,230}$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,59}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_CHUNK = 10_000


@dataclass(frozen=True)
class OrgUnitRule:
    """Where a report's org unit comes from: a place of a lineage, then a table or a field of it."""

    lineage: str = "submitter"
    level: str | int = "health_center"
    table: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class DataValueRule:
    """One data value per period and org unit: what it counts, and where DHIS2 keeps it."""

    name: str
    aggregate: str
    data_element: str
    filter: str = "true"
    category_option_combo: str | None = None
    attribute_option_combo: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class AggregateSettings:
    """The checked ``destination.dhis2`` block of an aggregate pipeline."""

    kind: str
    id_scheme: str
    dry_run: bool
    period: str
    time_zone: str
    org_unit: OrgUnitRule
    data_values: tuple[DataValueRule, ...]
    date: str = "doc.reported_date"
    date_lag_days: int = 0
    data_set: str | None = None
    absent: str = "delete"
    chunk_size: int = 500
    api_version: int | None = None


def parse(block: dict[str, Any], add: Callable[[str, str], None], common: dict[str, Any]) -> AggregateSettings | None:
    """The aggregate settings, every problem reported under its key."""
    for key in block:
        if key not in OWN_KEYS:
            add(key, f"unknown key for kind aggregate (allowed: {', '.join(sorted(OWN_KEYS))})")
    period = block.get("period", "monthly")
    if period not in PERIOD_TYPES:
        add("period", f"must be one of {', '.join(PERIOD_TYPES)} (got {period!r})")
    time_zone = parse_time_zone(block, add)
    date = block.get("date", "doc.reported_date")
    if not isinstance(date, str) or not date.strip():
        add("date", "must be a JavaScript expression or a doc. path giving a date (ms or ISO text)")
    lag = block.get("date_lag_days", 0)
    if isinstance(lag, bool) or not isinstance(lag, int) or not 0 <= lag <= 366:
        add("date_lag_days", "must be a whole number of days from 0 to 366")
    data_set = block.get("data_set")
    if data_set is not None and not _id(data_set):
        add("data_set", "must be the data set's id in the pipeline's id scheme")
    absent = block.get("absent", "delete")
    if absent not in ABSENT:
        add("absent", f"must be one of {', '.join(ABSENT)} (got {absent!r})")
    chunk = block.get("chunk_size", 500)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK:
        add("chunk_size", f"must be a whole number from 1 to {MAX_CHUNK}")
    version = block.get("api_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or not 28 <= version <= 99):
        add("api_version", "must be a DHIS2 API version such as 40 (pins /api/40/), or left out")
    org_unit = _org_unit(block.get("org_unit"), add)
    values = _data_values(block.get("data_values"), add)
    try:
        return AggregateSettings(
            **common, period=period, time_zone=time_zone, org_unit=org_unit, data_values=values, date=date,
            date_lag_days=lag, data_set=data_set, absent=absent, chunk_size=chunk, api_version=version,
        )  # fmt: skip
    except TypeError:  # pragma: no cover - common always has kind, id_scheme, dry_run
        return None


def is_aggregate(pipeline: Any) -> bool:
    """A DHIS2 aggregate pipeline: its periods are recomputed and posted whole, not documents one by one."""
    return isinstance(getattr(pipeline.destination, "settings", None), AggregateSettings)


def _id(value: Any) -> bool:
    return isinstance(value, str) and bool(ID_RE.match(value))


def _org_unit(value: Any, add: Callable[[str, str], None]) -> OrgUnitRule:
    if not isinstance(value, dict):
        add("org_unit", "required: a mapping with lineage, level and table or field")
        return OrgUnitRule()
    for key in value:
        if key not in ORG_UNIT_KEYS:
            add(f"org_unit.{key}", f"unknown key (allowed: {', '.join(sorted(ORG_UNIT_KEYS))})")
    lineage = value.get("lineage", "submitter")
    if lineage not in LINEAGES:
        add("org_unit.lineage", f"must be one of {', '.join(LINEAGES)} (got {lineage!r})")
    level = value.get("level", "health_center")
    if isinstance(level, bool) or not (
        (isinstance(level, int) and 1 <= level <= 20) or (isinstance(level, str) and FIELD_RE.match(level))
    ):
        add("org_unit.level", "must be a place type (e.g. health_center) or a depth from 1 (the top) to 20")
    table, field = value.get("table"), value.get("field")
    if (table is None) == (field is None):
        add("org_unit", "needs exactly one of table (a CSV of place_id,org_unit) or field (a field of the place)")
    if table is not None and (not isinstance(table, str) or not table.endswith(".csv")):
        add("org_unit.table", "must be the path of a .csv file (relative paths from the repository root)")
    if field is not None and (not isinstance(field, str) or not FIELD_RE.match(field)):
        add("org_unit.field", "must be the name of a field of the place document")
    return OrgUnitRule(lineage=lineage, level=level, table=table, field=field)


def _data_values(value: Any, add: Callable[[str, str], None]) -> tuple[DataValueRule, ...]:
    if not isinstance(value, list) or not value:
        add("data_values", "required: a list of data values (name, aggregate, filter, data_element, ...)")
        return ()
    rules: list[DataValueRule] = []
    seen_names: set[str] = set()
    seen_keys: set[tuple[Any, ...]] = set()
    for i, item in enumerate(value):
        at = f"data_values.{i}"
        if not isinstance(item, dict):
            add(at, "must be a mapping")
            continue
        for key in item:
            if key not in VALUE_KEYS:
                add(f"{at}.{key}", f"unknown key (allowed: {', '.join(sorted(VALUE_KEYS))})")
        name, aggregate = item.get("name", f"value{i}"), item.get("aggregate", "count")
        if not isinstance(name, str) or not NAME_RE.match(name) or name in seen_names:
            add(f"{at}.name", "must be a unique name of letters, digits and '_', starting with a letter")
        seen_names.add(name if isinstance(name, str) else "")
        if aggregate not in AGGREGATES:
            add(f"{at}.aggregate", f"must be one of {', '.join(AGGREGATES)} (got {aggregate!r})")
        filter_ = item.get("filter", "true")
        if not isinstance(filter_, str) or not filter_.strip():
            add(f"{at}.filter", "must be a JavaScript expression over the hydrated doc")
        field = item.get("field")
        if aggregate == "sum" and (not isinstance(field, str) or not field.strip()):
            add(f"{at}.field", "required with aggregate sum: a JS expression or doc. path giving a number")
        elif aggregate != "sum" and field is not None:
            add(f"{at}.field", "is used only with aggregate sum")
        ids = {k: item.get(k) for k in ("data_element", "category_option_combo", "attribute_option_combo")}
        if not _id(ids["data_element"]):
            add(f"{at}.data_element", "required: the data element's id in the pipeline's id scheme")
        for key in ("category_option_combo", "attribute_option_combo"):
            if ids[key] is not None and not _id(ids[key]):
                add(f"{at}.{key}", "must be an id in the pipeline's id scheme, or left out")
        natural = tuple(ids.values())
        if natural in seen_keys:
            add(at, "another data value has the same data element and option combos: they would overwrite each other")
        seen_keys.add(natural)
        rules.append(DataValueRule(name=str(name), aggregate=str(aggregate), filter=str(filter_), field=field, **ids))
    return tuple(rules)
