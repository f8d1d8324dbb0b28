"""Aggregate data values as DHIS2 imports and exports them: ``POST``/``GET /api/dataValueSets`` (§1.3).

A value is identified by its natural key (dataElement, period, orgUnit, categoryOptionCombo,
attributeOptionCombo): posting it again upserts. Each value the import cannot take becomes a
conflict with DHIS2's error code and message (``ErrorCode`` E76xx of dhis2-core), grouped by
(code, object) with the ``indexes`` of the posted values, and its index in ``rejectedIndexes``
(2.39+); the rest are saved. The summary's ``status`` is ``SUCCESS`` without conflicts,
``WARNING`` with some (a partial import: HTTP 409), ``ERROR`` when the whole set is refused (an
unknown data set or top-level org unit: HTTP 409, nothing saved).
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime
from typing import Any

from standins.dhis2.metadata import DEFAULT_COC, Metadata

SCHEME_KEYS = (
    "idScheme",
    "dataElementIdScheme",
    "orgUnitIdScheme",
    "categoryOptionComboIdScheme",
    "attributeOptionComboIdScheme",
    "dataSetIdScheme",
)
STRATEGIES = ("CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE")
PERIOD_RES = (
    re.compile(r"^(\d{4})$"),  # yearly
    re.compile(r"^(\d{4})Q([1-4])$"),  # quarterly
    re.compile(r"^(\d{4})(0[1-9]|1[0-2])$"),  # monthly
    re.compile(r"^(\d{4})W([1-9]|[1-4]\d|5[0-3])$"),  # weekly (ISO)
    re.compile(r"^(\d{4})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$"),  # daily
)

E7600 = "Data set not found or not accessible: `{0}`"
E7601 = "User does not have write access for DataSet: `{0}`"
E7603 = "Org unit not found or not accessible: `{0}`"
E7604 = "Attribute option combo not found or not accessible: `{0}`"
E7610 = "Data element not found or not accessible: `{0}`"
E7611 = "Period not valid: `{0}`"
E7612 = "Organisation unit not found or not accessible: `{0}`"
E7613 = "Category option combo not found or not accessible for writing data: `{0}`"
E7615 = "Attribute option combo not found or not accessible for writing data: `{0}`"
E7617 = "Organisation unit: `{0}` not in hierarchy of current user: `{1}`"
E7618 = "Data value or comment not specified for data element: `{0}`"
E7633 = "Data element: `{0}` is not part of dataset: `{1}`"


def valid_period(period: Any) -> bool:
    """A period DHIS2 can parse in the five formats of §1.3 (2024, 2024Q2, 202405, 2024W18, 20240501)."""
    if not isinstance(period, str):
        return False
    for pattern in PERIOD_RES:
        match = pattern.match(period)
        if match:
            if len(period) == 8:
                try:
                    date(int(period[:4]), int(period[4:6]), int(period[6:]))
                except ValueError:
                    return False
            return True
    return False


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


class DataValues:
    """The stored data values and the import that changes them."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.completeness: dict[
            tuple[str, str, str, str], str
        ] = {}  # (data set, period, org unit, aoc) -> completeDate

    # -- the import ---------------------------------------------------------------------------------

    def import_set(self, payload: dict[str, Any], params: dict[str, str], version: tuple[int, int]) -> dict[str, Any]:
        """The ImportSummary of importing ``payload``; ``params`` are the query parameters
        (payload attributes win over them); ``version`` is the server's (2, minor)."""
        names = SCHEME_KEYS + ("dryRun", "importStrategy", "skipExistingCheck")
        options = {key: value for key, value in params.items() if key in names}
        options.update({k: payload[k] for k in names if k in payload})
        general = str(options.get("idScheme", "uid"))
        scheme = {key: str(options.get(key, general)) for key in SCHEME_KEYS}
        dry_run = str(options.get("dryRun", "false")).lower() == "true"
        strategy = str(options.get("importStrategy", "CREATE_AND_UPDATE")).upper()
        values = payload.get("dataValues") or []
        summary = Summary(strategy, dry_run, scheme, version)
        if strategy not in STRATEGIES:
            raise ValueError(f"Invalid importStrategy: {strategy}")  # the server answers 400
        md = self.metadata
        data_set = None
        if payload.get("dataSet"):
            data_set = md.resolve("dataSets", payload["dataSet"], scheme["dataSetIdScheme"])
            if data_set is None:
                return summary.fatal(payload["dataSet"], E7600.format(payload["dataSet"]), "E7600", len(values))
            if not data_set.get("access", {}).get("data", {}).get("write"):
                return summary.fatal(data_set["id"], E7601.format(data_set["id"]), "E7601", len(values))
        top_ou = None
        if payload.get("orgUnit"):
            top_ou = md.resolve("organisationUnits", payload["orgUnit"], scheme["orgUnitIdScheme"])
            if top_ou is None:
                return summary.fatal(payload["orgUnit"], E7603.format(payload["orgUnit"]), "E7603", len(values))
        top_aoc = DEFAULT_COC
        if payload.get("attributeOptionCombo"):
            found = md.resolve(
                "categoryOptionCombos", payload["attributeOptionCombo"], scheme["attributeOptionComboIdScheme"]
            )
            if found is None:
                ref = payload["attributeOptionCombo"]
                return summary.fatal(ref, E7604.format(ref), "E7604", len(values))
            top_aoc = found["id"]
        members = {e["dataElement"]["id"] for e in (data_set or {}).get("dataSetElements", [])}
        keyed = []
        for index, value in enumerate(values):
            key = self._key(value, index, payload, summary, scheme, top_ou, top_aoc, members, data_set)
            if key is not None:
                keyed.append((key, value))
        if str(options.get("skipExistingCheck", "false")).lower() == "true" and self._any_live(k for k, _ in keyed):
            # Inserted without looking: a value that exists breaks the batch insert, and nothing is saved
            # (why §1.3 calls skipExistingCheck dangerous for retries).
            return summary.failed("The import process failed: Failed to flush BatchHandler", len(values))
        for key, value in keyed:
            self._save(key, value, summary, strategy, dry_run, version)
        complete = payload.get("completeDate")
        if complete and data_set is not None and payload.get("period") and top_ou is not None:
            if not dry_run:  # completeDate with dataSet registers the data set's completeness (§1.3)
                with self._lock:
                    self.completeness[(data_set["id"], payload["period"], top_ou["id"], top_aoc)] = str(complete)
            summary.complete = str(complete)
        return summary.finish()

    def _any_live(self, keys) -> bool:
        with self._lock:
            return any(k in self._values and not self._values[k]["deleted"] for k in keys)

    def _key(self, value, index, payload, summary, scheme, top_ou, top_aoc, members, data_set):
        """The natural key of one posted value, or None after recording why it was rejected."""
        md = self.metadata
        de_ref = value.get("dataElement")
        de = md.resolve("dataElements", de_ref, scheme["dataElementIdScheme"])
        if de is None:
            return summary.conflict(index, de_ref, "dataElement", "E7610", E7610.format(de_ref))
        period = value.get("period", payload.get("period"))
        if not valid_period(period):
            return summary.conflict(index, period, "period", "E7611", E7611.format(period))
        ou_ref = value.get("orgUnit")
        ou = md.resolve("organisationUnits", ou_ref, scheme["orgUnitIdScheme"]) if ou_ref else top_ou
        if ou is None:
            return summary.conflict(index, ou_ref, "orgUnit", "E7612", E7612.format(ou_ref))
        if not md.in_capture_scope(ou["id"]):
            message = E7617.format(ou["id"], md.user.get("username"))
            return summary.conflict(index, ou["id"], "orgUnit", "E7617", message)
        coc_ref = value.get("categoryOptionCombo")
        coc = md.resolve("categoryOptionCombos", coc_ref, scheme["categoryOptionComboIdScheme"]) if coc_ref else None
        if coc_ref and coc is None:
            return summary.conflict(index, coc_ref, "categoryOptionCombo", "E7613", E7613.format(coc_ref))
        aoc_ref = value.get("attributeOptionCombo")
        aoc = md.resolve("categoryOptionCombos", aoc_ref, scheme["attributeOptionComboIdScheme"]) if aoc_ref else None
        if aoc_ref and aoc is None:
            return summary.conflict(index, aoc_ref, "attributeOptionCombo", "E7615", E7615.format(aoc_ref))
        if data_set is not None and members and de["id"] not in members:
            message = E7633.format(de["id"], data_set["id"])
            return summary.conflict(index, de["id"], "dataElement", "E7633", message)
        if value.get("value") in (None, "") and not value.get("comment") and summary.strategy != "DELETE":
            return summary.conflict(index, de["id"], "dataElement", "E7618", E7618.format(de["id"]))
        return (de["id"], period, ou["id"], coc["id"] if coc else DEFAULT_COC, aoc["id"] if aoc else top_aoc)

    def _save(self, key, value, summary, strategy, dry_run, version) -> None:
        new = {"value": None if value.get("value") is None else str(value["value"]), "comment": value.get("comment")}
        new["followup"] = bool(value.get("followUp", value.get("followup", False)))
        with self._lock:
            old = self._values.get(key)
            live = old is not None and not old["deleted"]
            if strategy == "DELETE":
                outcome = "deleted" if live else "ignored"
            elif not live:
                outcome = "ignored" if strategy == "UPDATE" else "imported"
            elif strategy == "CREATE":
                outcome = "ignored"
            elif all(old[k] == new[k] for k in new) and version >= (2, 41):
                outcome = "ignored"  # 2.41+: an unchanged value is ignored, before it was "updated"
            else:
                outcome = "updated"
            summary.count[outcome] += 1
            if dry_run or outcome == "ignored":
                return
            now = _now()
            if outcome == "deleted":
                old.update(deleted=True, lastUpdated=now)
                return
            created = old["created"] if old else now
            self._values[key] = {**new, "storedBy": value.get("storedBy", "bridge"), "created": created,
                                 "lastUpdated": now, "deleted": False}  # fmt: skip

    # -- reading -------------------------------------------------------------------------------------

    def read(
        self, data_sets: list[str], periods: list[str], org_units: list[str], *, children: bool = False,
        data_elements: list[str] | None = None, start: str | None = None, end: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The live values of the data sets' data elements (and ``data_elements``) for the periods
        and org units (with their descendants when ``children``), as ``GET /api/dataValueSets`` lists them."""
        md = self.metadata
        wanted = set(data_elements or [])
        for ds in data_sets:
            wanted |= {e["dataElement"]["id"] for e in (md.get("dataSets", ds) or {}).get("dataSetElements", [])}
        units = set(org_units)
        if children:
            units |= {ou["id"] for ou in md.all("organisationUnits") if set(ou["path"].split("/")) & set(org_units)}
        out = []
        with self._lock:
            for (de, pe, ou, coc, aoc), v in sorted(self._values.items()):
                if v["deleted"] or de not in wanted or ou not in units:
                    continue
                if periods and pe not in periods:
                    continue
                if not periods and not (start and end and _period_within(pe, start, end)):
                    continue
                row = {"dataElement": de, "period": pe, "orgUnit": ou, "categoryOptionCombo": coc,
                       "attributeOptionCombo": aoc, "value": v["value"], "storedBy": v["storedBy"],
                       "created": v["created"], "lastUpdated": v["lastUpdated"], "followup": v["followup"]}  # fmt: skip
                if v.get("comment"):
                    row["comment"] = v["comment"]
                out.append(row)
        return out

    def set_value(self, data_element: str, period: str, org_unit: str, value: str | None,
                  coc: str = DEFAULT_COC, aoc: str = DEFAULT_COC) -> None:  # fmt: skip
        """Change (or with ``None`` delete) one value behind the bridge's back, as a person at
        DHIS2 would: for the reconciliation test."""
        key = (data_element, period, org_unit, coc, aoc)
        now = _now()
        with self._lock:
            if value is None:
                if key in self._values:
                    self._values[key].update(deleted=True, lastUpdated=now)
                return
            old = self._values.get(key)
            self._values[key] = {"value": str(value), "comment": None, "followup": False, "storedBy": "admin",
                                 "created": old["created"] if old else now, "lastUpdated": now, "deleted": False}  # fmt: skip

    def snapshot(self) -> list[list[Any]]:
        """Every stored value (deleted ones too) as JSON-ready ``[key, value]`` pairs."""
        with self._lock:
            return [[list(k), dict(v)] for k, v in self._values.items()]

    def restore(self, pairs: list[list[Any]]) -> None:
        with self._lock:
            self._values = {tuple(k): v for k, v in pairs}

    def count(self) -> int:
        with self._lock:
            return sum(1 for v in self._values.values() if not v["deleted"])


def _period_within(period: str, start: str, end: str) -> bool:
    """Whether a period's first day lies in [start, end] (ISO dates); used for startDate/endDate."""
    first = period_start(period)
    return first is not None and start <= first.isoformat() <= end


def period_start(period: str) -> date | None:
    if not valid_period(period):
        return None
    year = int(period[:4])
    if len(period) == 4:
        return date(year, 1, 1)
    if "Q" in period:
        return date(year, 3 * int(period[5]) - 2, 1)
    if "W" in period:
        return date.fromisocalendar(year, int(period[5:]), 1)
    if len(period) == 6:
        return date(year, int(period[4:]), 1)
    return date(year, int(period[4:6]), int(period[6:]))


class Summary:
    """The ImportSummary being built for one import."""

    def __init__(self, strategy: str, dry_run: bool, scheme: dict[str, str], version: tuple[int, int]) -> None:
        self.strategy = strategy
        self.dry_run = dry_run
        self.scheme = scheme
        self.version = version
        self.count = {"imported": 0, "updated": 0, "ignored": 0, "deleted": 0}
        self.conflicts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rejected: list[int] = []
        self.status = "SUCCESS"
        self.description = "Import process completed successfully"
        self.complete = "false"  # dataSetComplete: the completeDate registered, else "false"

    def conflict(self, index: int, obj: Any, prop: str, code: str, message: str) -> None:
        self.count["ignored"] += 1
        self.rejected.append(index)
        key = (code, str(obj), prop)
        if key not in self.conflicts:
            self.conflicts[key] = {"object": str(obj), "objects": {prop: str(obj)}, "value": message,
                                   "errorCode": code, "property": prop, "indexes": []}  # fmt: skip
        self.conflicts[key]["indexes"].append(index)
        return None

    def fatal(self, obj: Any, message: str, code: str, n_values: int) -> dict[str, Any]:
        self.count["ignored"] = n_values
        self.conflicts[(code, str(obj), "")] = {"object": str(obj), "value": message, "errorCode": code}
        self.status, self.description = "ERROR", "Import process was aborted"
        return self._body()

    def failed(self, description: str, n_values: int) -> dict[str, Any]:
        """The import broke off: nothing saved, no conflicts, the reason in ``description``."""
        self.count = {"imported": 0, "updated": 0, "ignored": n_values, "deleted": 0}
        self.status, self.description = "ERROR", description
        return self._body()

    def finish(self) -> dict[str, Any]:
        if self.conflicts:
            self.status = "WARNING"
        return self._body()

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "responseType": "ImportSummary",
            "status": self.status,
            "importOptions": {
                "importStrategy": self.strategy,
                "dryRun": self.dry_run,
                "idSchemes": {k: v.upper() for k, v in self.scheme.items()},
            },  # fmt: skip
            "description": self.description,
            "importCount": dict(self.count),
            "conflicts": list(self.conflicts.values()),
            "dataSetComplete": self.complete,
        }
        if self.version >= (2, 39):  # rejectedIndexes arrived with dhis2-core#13587 (2.39/2.40 backports)
            body["rejectedIndexes"] = sorted(self.rejected)
        return body
