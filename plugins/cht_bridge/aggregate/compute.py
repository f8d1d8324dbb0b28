"""Aggregate mapped CHT reports into DHIS2 data values, page by page, with bounded memory.

The pipeline's mapping runs in the V8 sandbox as for any pipeline; this module adds to it the
columns an aggregate needs (``columns``): the date, the place at the chosen lineage level (or the
org unit held in one of its fields), the patient, each data value's filter and each sum's number.
A page of mapped reports becomes a small pandas frame, reduced at once to partial results per
period, org unit and data value; only those partials are kept (``Accumulator``), never the
reports, so a million reports cost what their cells cost.

Distinct patients cannot be summed page by page, so the accumulator keeps, per cell, the set of
64-bit hashes of the patients seen (``pandas.util.hash_array`` of the id): memory grows with the
distinct (cell, patient) pairs, at 8 bytes plus the cell's codes each, not with the reports,
and the count is exact unless two ids share a 64-bit hash (about 1 in 10^8 at a million patients).
A report without a patient is not counted by a ``distinct_patients`` value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cht_bridge.config.kinds.dhis2_aggregate import AggregateSettings
from cht_bridge.mapping import Mapped

#: Keys the aggregate adds to the pipeline's mapping (a pipeline's own keys must not use them).
DATE, PLACE, ORG_UNIT, PATIENT, FILTERS, NUMBERS = (
    "_agg_date",
    "_agg_place",
    "_agg_ou",
    "_agg_patient",
    "_agg_f",
    "_agg_n",
)
#: Report ids kept in memory per kind of problem (unplaced, undated, unmapped); the counts are whole.
LISTED = 1000
COMPACT_PARTS = 64


def columns(settings: AggregateSettings) -> dict[str, Any]:
    """The mapping entries (CHT outbound ``expr`` sources) that give each report's aggregate columns."""
    rule = settings.org_unit
    root = "doc.contact" if rule.lineage == "submitter" else "doc.patient"
    # The lineage, nearest first: a submitter's starts at the place above the person; a patient's too.
    chain = f"(function(){{var out=[],n=({root}||{{}}).parent,i=0;while(n&&i<50){{out.push(n);n=n.parent;i++;}}return out;}})()"
    if isinstance(rule.level, int):
        pick = f"(function(c){{return c.length>={rule.level}?c[c.length-{rule.level}]:null;}})({chain})"
    else:
        level = json.dumps(rule.level)
        pick = (
            f"(function(c){{for(var i=0;i<c.length;i++){{var t=c[i].type==='contact'?c[i].contact_type:c[i].type;"
            f"if(t==={level})return c[i];}}return null;}})({chain})"
        )
    out: dict[str, Any] = {
        DATE: _source(settings.date),
        PLACE: {"expr": f"(function(p){{return p&&p._id?p._id:null;}})({pick})", "optional": True},
        PATIENT: {
            "expr": "(doc.patient&&doc.patient._id)||(doc.fields&&(doc.fields.patient_uuid||doc.fields.patient_id))"
            "||doc.patient_id||null",
            "optional": True,
        },
        FILTERS: {"expr": "[" + ",".join(f"Boolean({r.filter}\n)" for r in settings.data_values) + "]"},
        NUMBERS: {
            "expr": "["
            + ",".join(f"Number({r.field}\n)" if r.aggregate == "sum" else "null" for r in settings.data_values)
            + "]"
        },
    }
    if rule.field is not None:
        out[ORG_UNIT] = {
            "expr": f"(function(p){{return p?(p[{json.dumps(rule.field)}]||null):null;}})({pick})",
            "optional": True,
        }
    return out


def _source(source: str) -> dict[str, Any]:
    return {"expr": source, "optional": True}


@dataclass
class Problems:
    """Reports that could not be counted, and why: counted whole, listed up to ``LISTED`` ids."""

    count: int = 0
    ids: list[str] = field(default_factory=list)

    def add(self, ids: list[str]) -> None:
        self.count += len(ids)
        room = LISTED - len(self.ids)
        if room > 0:
            self.ids.extend(ids[:room])


@dataclass
class PageRows:
    """What one page contributed: per report, its period and org unit (for the ledger)."""

    ids: list[str]
    periods: list[str | None]
    org_units: list[str | None]


class Accumulator:
    """Partial results per (period, org unit, data value), merged page by page.

    ``periods``: only reports of these periods are counted (a read window may hold others);
    ``None`` counts every period.
    """

    def __init__(self, settings: AggregateSettings, org_unit_for: Any, periods: set[str] | None = None) -> None:
        self.settings = settings
        self.org_unit_for = org_unit_for  # place uuid -> org unit (the table), or None with a field rule
        self.periods = periods
        self.rules = settings.data_values
        self._sums: list[Any] = []  # frames of (period, org_unit, rule, value)
        self._pairs: list[Any] = []  # frames of (period, org_unit, rule, h): distinct patients
        self._pairs_rows = 0
        self._pairs_compacted = 0
        self.counted = 0  # reports that reached a cell
        self.unplaced = Problems()  # no org unit for their place
        self.undated = Problems()  # no readable date
        self.unmapped = Problems()  # the mapping or a filter failed on them (the error is in the ledger)
        self.places_unplaced: dict[str, int] = {}  # place uuid (or "(none)") -> reports, for the log

    def add(self, mapped: list[Mapped]) -> PageRows:
        """Count a page of mapped reports (relevant ones; the rest are not the pipeline's)."""
        import numpy as np
        import pandas as pd

        rows = [m for m in mapped if m.relevant and m.error is None]
        self.unmapped.add([m.doc_id for m in mapped if m.error is not None])
        if not rows:
            return PageRows([], [], [])
        payloads = [json.loads(m.body or "{}") for m in rows]
        ids = [m.doc_id for m in rows]
        frame = pd.DataFrame(
            {
                "id": ids,
                "date": [p.get(DATE) for p in payloads],
                "place": [p.get(PLACE) for p in payloads],
                "patient": [p.get(PATIENT) for p in payloads],
            }
        )
        from cht_bridge.aggregate.periods import local_periods

        frame["period"] = local_periods(frame["date"], self.settings.period, self.settings.time_zone)
        if self.settings.org_unit.field is not None:
            frame["org_unit"] = [_text(p.get(ORG_UNIT)) for p in payloads]
        else:
            frame["org_unit"] = [self.org_unit_for(place) for place in frame["place"]]
        page = PageRows(ids, list(frame["period"]), list(frame["org_unit"]))
        undated = frame["period"].isna()
        self.undated.add(list(frame.loc[undated, "id"]))
        wanted = ~undated if self.periods is None else frame["period"].isin(self.periods)
        unplaced = wanted & frame["org_unit"].isna()
        if unplaced.any():
            self.unplaced.add(list(frame.loc[unplaced, "id"]))
            for place in frame.loc[unplaced, "place"].fillna("(none)"):
                self.places_unplaced[place] = self.places_unplaced.get(place, 0) + 1
        keep = (wanted & ~unplaced).to_numpy()
        if not keep.any():
            return page
        frame = frame[keep].reset_index(drop=True)
        flags = np.array([p.get(FILTERS) or [] for p, k in zip(payloads, keep, strict=True) if k], dtype=object)
        numbers = [p.get(NUMBERS) or [] for p, k in zip(payloads, keep, strict=True) if k]
        self.counted += len(frame)
        for i, rule in enumerate(self.rules):
            mask = np.array([bool(f[i]) if len(f) > i else False for f in flags], dtype=bool)
            if not mask.any():
                continue
            chosen = frame.loc[mask, ["period", "org_unit"]]
            if rule.aggregate == "count":
                part = chosen.groupby(["period", "org_unit"]).size().rename("value").reset_index()
            elif rule.aggregate == "sum":
                value = pd.to_numeric(pd.Series([n[i] if len(n) > i else None for n in numbers]), errors="coerce")
                chosen = chosen.assign(value=value[mask].fillna(0.0).to_numpy())
                part = chosen.groupby(["period", "org_unit"])["value"].sum().reset_index()
            else:
                patients = frame.loc[mask, "patient"]
                has = patients.notna().to_numpy()
                hashes = pd.util.hash_array(patients[has].astype(str).to_numpy(dtype=object))
                pairs = chosen[has].assign(rule=i, h=hashes).drop_duplicates()
                self._pairs.append(pairs)
                self._pairs_rows += len(pairs)
                self._compact_pairs()
                continue
            self._sums.append(part.assign(rule=i))
        if len(self._sums) > COMPACT_PARTS:
            self._sums = [self._merged_sums()]
        return page

    def _compact_pairs(self) -> None:
        """Drop repeated (cell, patient) pairs once the pages' pairs double what was last kept."""
        import pandas as pd

        if self._pairs_rows > max(2 * self._pairs_compacted, 100_000):
            merged = pd.concat(self._pairs, ignore_index=True).drop_duplicates()
            self._pairs = [merged]
            self._pairs_rows = self._pairs_compacted = len(merged)

    def _merged_sums(self) -> Any:
        import pandas as pd

        if not self._sums:
            return pd.DataFrame(columns=["period", "org_unit", "rule", "value"])
        return (
            pd.concat(self._sums, ignore_index=True)
            .groupby(["period", "org_unit", "rule"], as_index=False)["value"]
            .sum()
        )

    def cells(self) -> dict[tuple[str, str, int], float]:
        """The final value of every cell that has reports: (period, org unit, rule index) -> value."""
        import pandas as pd

        out: dict[tuple[str, str, int], float] = {}
        for row in self._merged_sums().itertuples(index=False):
            out[(row.period, row.org_unit, int(row.rule))] = float(row.value)
        if self._pairs:
            pairs = pd.concat(self._pairs, ignore_index=True).drop_duplicates()
            self._pairs, self._pairs_rows = [pairs], len(pairs)
            for (period, org_unit, rule), n in pairs.groupby(["period", "org_unit", "rule"]).size().items():
                out[(period, org_unit, int(rule))] = float(n)
        return out


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def number_text(value: float) -> str:
    """A value as DHIS2 stores it: whole numbers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
