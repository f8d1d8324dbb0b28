"""Does DHIS2 still hold an event for every CHT report? A tracker pipeline's reconciliation.

For ``[start, end)`` (calendar days of the instance's ``time_zone``, the zone the events'
dates are sent in) the pipeline's relevant reports are read from CHT
(``reports_by_date``, page by page, hydrated and mapped by the pipeline's own mapping, without
touching the ledger) and turned into the events the destination would send (``TrackerDestination.objects``:
the same org unit and the same UID); DHIS2's events of the program are read back
(``events.read_events``). Both sides are counted per month (of the event's ``occurredAt``) and
org unit, and compared event by event (the UIDs derive from the reports' ``_id``):

- ``missing_in_dhis2``: a report whose event DHIS2 does not hold (never sent, refused, deleted there);
- ``not_in_cht``: an event of the program no report of the window gives (typed in at DHIS2, or
  its report deleted or no longer relevant in CHT);
- cells (month, org unit) whose counts differ.

A CSV and an HTML report list every difference (report ids and event UIDs, no data values); the
result carries the totals. With ``repost`` the reports whose event is missing are sent again as a
replay of their ledger rows (``sync.replay_documents``): read from CHT, mapped, sent with the
same UIDs (an update if DHIS2 had it after all; a UID deleted at DHIS2 stays refused, E1082), and
every answer recorded against the report's row, so a refused repost is a dead letter (or failed)
with DHIS2's reason, as any delivery.
Cells name org units as the events carry them: UIDs at DHIS2, the pipeline's id scheme in CHT.
It lives beside the aggregate reconciliation (``reconcile.py``) because it reads CHT as that one
does; the destinations layer stays below the sources (``tests/unit/test_import_graph.py``).
"""

from __future__ import annotations

import csv
import html
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cht_bridge.destinations.dhis2.events import read_events
from cht_bridge.http.read import Reader
from cht_bridge.source import Hydrator, iter_reports_by_date
from cht_bridge.state import DELIVERED

log = logging.getLogger(__name__)

COLUMNS = ("difference", "period", "org_unit", "cht", "dhis2", "event", "report")


@dataclass
class TrackerReconciliation:
    """Totals of one comparison (what the log and XCom carry) and where the report is."""

    pipeline: str
    start: str
    end: str
    cht_events: int = 0
    dhis2_events: int = 0
    equal_cells: int = 0
    different_cells: int = 0
    missing_in_dhis2: int = 0
    not_in_cht: int = 0
    unplaced_reports: int = 0  # relevant reports without an org unit (or a person): no event to expect
    unmapped_reports: int = 0  # relevant reports the mapping failed on
    reposted: int = 0
    repost_refused: int = 0
    csv: str | None = None
    html: str | None = None

    @property
    def differences(self) -> int:
        return self.missing_in_dhis2 + self.not_in_cht + self.different_cells

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "differences": self.differences}


def reconcile_tracker(
    pipeline: Any,
    *,
    client: Any,
    destination: Any,
    mapper: Any,
    start: datetime,
    end: datetime,
    folder: Path,
    repost: bool = False,
    store: Any = None,
    logger: logging.Logger = log,
) -> TrackerReconciliation:
    """Compare the events of ``[start, end)`` between CHT and DHIS2; write the report; optionally re-send.

    ``store`` (the pipeline's state store) is needed with ``repost``: the re-sent reports' answers go to the ledger.
    """
    if repost and store is None:
        raise ValueError("reconcile_tracker: repost needs the pipeline's state store")
    result = TrackerReconciliation(pipeline.name, start.date().isoformat(), end.date().isoformat())
    expected = _cht_events(pipeline, client, destination, mapper, start, end, result)
    reader = Reader(destination._session, conn_id=destination.conn_id, system="DHIS2", timeout=destination.timeout)
    program = _program_uid(reader, destination)
    held: dict[str, tuple[str, str]] = {}
    last_day = (end - timedelta(milliseconds=1)).date().isoformat()
    for event in read_events(
        reader, destination.api_url, program, occurred_after=result.start, occurred_before=last_day
    ):
        day = str(event.get("occurredAt") or "")[:10]
        if result.start <= day <= last_day:
            held[str(event.get("event"))] = (_month(day), str(event.get("orgUnit", "")))
    result.cht_events, result.dhis2_events = len(expected), len(held)
    rows = _compare(expected, held, result)
    if repost and result.missing_in_dhis2:
        missing = [expected[uid] for uid in expected if uid not in held]
        _repost(pipeline, missing, client=client, destination=destination, mapper=mapper, store=store, r=result,
                logger=logger)  # fmt: skip
    _write(folder, rows, result)
    logger.info(
        "reconcile %s %s..%s: CHT %d events, DHIS2 %d; %d missing in DHIS2, %d not in CHT, %d of %d cells differ; "
        "%d reports unplaced, %d unmapped; %d re-sent",
        result.pipeline, result.start, result.end, result.cht_events, result.dhis2_events, result.missing_in_dhis2,
        result.not_in_cht, result.different_cells, result.different_cells + result.equal_cells,
        result.unplaced_reports, result.unmapped_reports, result.reposted,
    )  # fmt: skip
    return result


@dataclass(frozen=True)
class _Expected:
    doc_id: str
    period: str
    org_unit: str
    body: str


def _cht_events(pipeline, client, destination, mapper, start, end, result) -> dict[str, _Expected]:
    """The event UID -> (report, month, org unit) of every relevant report of the window, as the destination builds it."""
    hydrator = Hydrator(client, sandbox=mapper.sandbox)
    load = lambda text, after: hydrator.load_page(text, json.dumps({"after": after}) if after else None)  # noqa: E731
    zone = ZoneInfo(destination.settings.time_zone)  # the window's days are the instance's, as the events' dates
    start_ms, end_ms = (int(datetime.combine(d.date(), time.min, zone).timestamp() * 1000) for d in (start, end))
    first, last = start.date().isoformat(), (end - timedelta(milliseconds=1)).date().isoformat()
    expected: dict[str, _Expected] = {}
    for page in iter_reports_by_date(client, start_ms, end_ms, pipeline.batch_size, load):
        for mapped in mapper.map_batch(hydrator.hydrated(page)):
            if not mapped.relevant:
                continue
            if mapped.error is not None:
                result.unmapped_reports += 1
                continue
            objects = destination.objects(mapped.doc_id, mapped.payload)
            if isinstance(objects, str):
                result.unplaced_reports += 1
                continue
            event = objects.event
            day = str((event or {}).get("occurredAt") or "")[:10]
            if event is None or not first <= day <= last:
                continue  # enrollment only, or an event dated outside the window
            expected[event["event"]] = _Expected(mapped.doc_id, _month(day), event["orgUnit"], mapped.body or "")
        mapper.sandbox.trim()
    return expected


def _program_uid(reader: Reader, destination: Any) -> str:
    """The program's UID (the events endpoint takes UIDs), looked up when the pipeline names it by code or name."""
    s = destination.settings
    if s.id_scheme == "UID":
        return s.program
    by = s.id_scheme.lower()
    found = reader.get_json(
        f"{destination.api_url}/programs", {"filter": f"{by}:eq:{s.program}", "fields": "id", "paging": "false"}
    )
    programs = found.get("programs") if isinstance(found, dict) else None
    return programs[0]["id"] if programs else s.program


def _month(day: str) -> str:
    return day[:7].replace("-", "")


def _compare(expected: dict[str, _Expected], held: dict[str, tuple[str, str]], r: TrackerReconciliation) -> list[tuple]:
    rows: list[tuple] = []
    cht_cells = Counter((e.period, e.org_unit) for e in expected.values())
    dhis2_cells = Counter(held.values())
    for cell in sorted(set(cht_cells) | set(dhis2_cells)):
        a, b = cht_cells.get(cell, 0), dhis2_cells.get(cell, 0)
        if a == b:
            r.equal_cells += 1
        else:
            r.different_cells += 1
            rows.append(("count", *cell, a, b, "", ""))
    for uid, e in sorted(expected.items(), key=lambda kv: (kv[1].period, kv[1].org_unit, kv[0])):
        if uid not in held:
            r.missing_in_dhis2 += 1
            rows.append(("missing_in_dhis2", e.period, e.org_unit, 1, 0, uid, e.doc_id))
    for uid, (period, org_unit) in sorted(held.items(), key=lambda kv: (kv[1], kv[0])):
        if uid not in expected:
            r.not_in_cht += 1
            rows.append(("not_in_cht", period, org_unit, 0, 1, uid, ""))
    return rows


def _repost(pipeline: Any, missing: list[_Expected], *, client: Any, destination: Any, mapper: Any, store: Any,
            r: TrackerReconciliation, logger: logging.Logger) -> None:  # fmt: skip
    """Send the reports whose event DHIS2 lacks as a replay of their ledger rows: the answers are recorded
    against those rows (delivered, or failed/dead with DHIS2's reason), as any delivery's."""
    from cht_bridge.state import UPSERT
    from cht_bridge.sync import replay_documents

    rows = [{"doc_id": e.doc_id, "doc_rev": None, "operation": UPSERT, "destination_id": None, "payload_hash": None,
             "idempotency_key": None} for e in missing]  # fmt: skip
    replay_documents(pipeline, rows, client=client, destination=destination, store=store, mapper=mapper, logger=logger)
    states = store.states(pipeline.name, [e.doc_id for e in missing])
    for e in missing:
        state = states.get(e.doc_id)
        if state is not None and state.status == DELIVERED:
            r.reposted += 1
        else:
            r.repost_refused += 1


def _write(folder: Path, rows: list[tuple], r: TrackerReconciliation) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = folder / f"{r.pipeline}_{r.start}_{r.end}_{stamp}"
    with base.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:  # a Path or an ObjectStoragePath
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    totals = (f"CHT {r.cht_events} events, DHIS2 {r.dhis2_events}: {r.missing_in_dhis2} missing in DHIS2, "
              f"{r.not_in_cht} not in CHT, {r.different_cells} (month, org unit) counts differ")  # fmt: skip
    base.with_suffix(".html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>CHT ↔ DHIS2 tracker reconciliation</title></head>"
        f"<body><h1>{html.escape(r.pipeline)}: {r.start} to {r.end}</h1><p>{html.escape(totals)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )
    r.csv, r.html = str(base.with_suffix(".csv")), str(base.with_suffix(".html"))
